/** Projected vision tokens: an image encoded once, reusable across prompts. */

/** How a video's tokens split into frames: rows are frame after frame, in this order. */
export interface VideoTokenLayout {
  /** Seconds from the start of the video of each sampled frame (`index / native fps`). */
  timestamps: number[];
  /** Tokens kept per frame after differential frame pruning. */
  tokensPerFrame: number[];
}

/** Where a {@link VisionTokens} came from. */
export type VisionSource = 'image' | 'video';

/**
 * The output of the vision encoder and projector for one image: `shape = [tokens, width]`
 * (width = the language model's hidden size), float32. Pass it in a prompt instead of the
 * image to skip a second vision pass.
 */
export class VisionTokens {
  /** `[tokens, width]`. */
  readonly shape: readonly [number, number];
  /** Always `'float32'`. */
  readonly dtype = 'float32' as const;
  /** What was encoded. */
  readonly source: VisionSource;
  /** Patch grid `[height, width]` before merging (per frame for a video). */
  readonly grid: readonly [number, number];
  /** For a video: each sampled frame's timestamp (seconds) and kept token count, in order. */
  readonly video?: VideoTokenLayout;
  /** @internal The model that produced these tokens. */
  readonly modelId: number;
  readonly #data: Float32Array;

  /** @internal Built by `Model.encode()`. */
  constructor(
    data: Float32Array,
    rows: number,
    cols: number,
    grid: [number, number],
    source: VisionSource,
    modelId: number,
    video?: VideoTokenLayout,
  ) {
    this.#data = data;
    this.shape = [rows, cols];
    this.grid = grid;
    this.source = source;
    this.modelId = modelId;
    if (video) this.video = video;
  }

  /** A copy of the values, row-major `[tokens, width]`. */
  async data(): Promise<Float32Array> {
    return this.#data.slice();
  }

  /** @internal Zero-copy access for prompt building. */
  rawData(): Float32Array {
    return this.#data;
  }
}
