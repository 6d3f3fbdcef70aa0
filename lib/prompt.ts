/**
 * Prompts: a string, `{ text, images, system }`, or chat `messages`; rendered with VideoLLaMA 3's
 * ChatML layout (spec §10.1): `<|im_start|>{role}\n{content}<|im_end|>\n` per message, images
 * before their text as `<|image_pad|>×n\n`, then `<|im_start|>assistant\n`. No default system prompt.
 */
import { VideoLlama3Error } from './errors';
import type { RawImage } from './media/image';
import type { VideoInput } from './media/video';

export type { RawImage } from './media/image';
import type { VisionTokens } from './vision-tokens';

/** An image: a file path, an encoded image (JPEG, PNG, WebP, GIF), raw pixels, or tokens from `Model.encode()`. */
export type ImageInput = string | Buffer | Uint8Array | RawImage | VisionTokens;

/** Per-video sampling options (defaults come from the model: 1 fps, 4..180 frames, pruning 0.1). */
export interface VideoPartOptions {
  /** Frames sampled per second of video. */
  fps?: number;
  /** Most frames sampled. */
  maxFrames?: number;
  /** Differential frame pruning threshold; 0 keeps every token. */
  pruneThreshold?: number;
  /** Apply the file's display rotation (phone videos); default false, as the reference. */
  autoRotate?: boolean;
}

/** A video: a file path, an encoded video Buffer, decoded frames, or tokens from `Model.encode()`. */
export type VideoPromptInput = VideoInput | VisionTokens;

/** One part of a message's content. */
export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image'; image: ImageInput }
  | ({ type: 'video'; video: VideoPromptInput } & VideoPartOptions);

/** A chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}

/** What `generate()` accepts. Images come before videos in the user turn, each in the order given, then the text. */
export type Prompt =
  | string
  | { text: string; images?: ImageInput[]; videos?: VideoPromptInput[]; system?: string }
  | { messages: ChatMessage[] };

/** A rendered prompt: text pieces and image / video slots, in order. */
export type RenderedPiece =
  | { text: string }
  | { image: ImageInput }
  | { video: VideoPromptInput; options: VideoPartOptions };

function invalid(message: string): never {
  throw new VideoLlama3Error('INVALID_ARGUMENT', message);
}

/** Normalizes any {@link Prompt} to chat messages, validating its shape. */
export function toMessages(prompt: Prompt): ChatMessage[] {
  if (typeof prompt === 'string') return [{ role: 'user', content: prompt }];
  if (typeof prompt !== 'object' || prompt === null) {
    invalid('Expected a string, { text, images?, system? } or { messages } for prompt');
  }
  if ('messages' in prompt) {
    if (!Array.isArray(prompt.messages) || prompt.messages.length === 0) invalid('Expected a non-empty array for prompt.messages');
    prompt.messages.forEach((m, i) => {
      if (!m || !['system', 'user', 'assistant'].includes(m.role)) {
        invalid(`Expected role 'system', 'user' or 'assistant' for prompt.messages[${i}].role but received ${JSON.stringify(m?.role)}`);
      }
      if (typeof m.content !== 'string' && !Array.isArray(m.content)) invalid(`Expected string or array for prompt.messages[${i}].content`);
      if (Array.isArray(m.content)) {
        m.content.forEach((p, j) => {
          if (!p || (p.type !== 'text' && p.type !== 'image' && p.type !== 'video')) {
            invalid(`Expected { type: 'text' | 'image' | 'video' } for prompt.messages[${i}].content[${j}]`);
          }
          if (p.type === 'text' && typeof p.text !== 'string') invalid(`Expected string for prompt.messages[${i}].content[${j}].text`);
        });
      }
    });
    return prompt.messages;
  }
  if (typeof prompt.text !== 'string') invalid('Expected string for prompt.text');
  const images = prompt.images ?? [];
  if (!Array.isArray(images)) invalid('Expected an array for prompt.images');
  const videos = prompt.videos ?? [];
  if (!Array.isArray(videos)) invalid('Expected an array for prompt.videos');
  const messages: ChatMessage[] = [];
  if (prompt.system !== undefined) {
    if (typeof prompt.system !== 'string') invalid('Expected string for prompt.system');
    messages.push({ role: 'system', content: prompt.system });
  }
  messages.push({
    role: 'user',
    content: [
      ...images.map((image) => ({ type: 'image' as const, image })),
      ...videos.map((video) => ({ type: 'video' as const, video })),
      { type: 'text' as const, text: prompt.text },
    ],
  });
  return messages;
}

/** Renders messages to text pieces and image slots (spec §10.1), ending with the generation prompt. */
export function renderPrompt(messages: readonly ChatMessage[]): RenderedPiece[] {
  const out: RenderedPiece[] = [];
  let text = '';
  for (const m of messages) {
    text += `<|im_start|>${m.role}\n`;
    const parts: ContentPart[] = typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content;
    for (const p of parts) {
      if (p.type === 'text') {
        text += p.text;
      } else {
        out.push({ text });
        if (p.type === 'image') out.push({ image: p.image });
        else out.push({ video: p.video, options: { fps: p.fps, maxFrames: p.maxFrames, pruneThreshold: p.pruneThreshold, autoRotate: p.autoRotate } });
        text = '\n';
      }
    }
    text += '<|im_end|>\n';
  }
  text += '<|im_start|>assistant\n';
  out.push({ text });
  return out.filter((p) => !('text' in p) || p.text.length > 0);
}
