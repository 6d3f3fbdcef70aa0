// The one table of GGUF names: tensor names (with the Hugging Face names they come from, in
// both checkpoint layouts) and metadata keys. The converter (lib/convert) reads this table
// through the addon; the model loaders read the same constants. See native/model/README.md.
#pragma once

#include <cstddef>

namespace vl3::names {

/** Which GGUF file a tensor lives in. */
enum class ModelFile { Llm, Vision };

/** How a Hugging Face tensor is laid into GGUF (ggml ne order is the PyTorch shape reversed). */
enum class Layout {
  AsIs,          // same bytes; ne = reversed shape
  FlattenConv,   // Conv2d [out, c, kh, kw] -> 2-D [out, c*kh*kw] (ne = [c*kh*kw, out])
};

/**
 * One tensor. `{N}` in a name is the layer index. `hf_native` is the transformers
 * `video_llama_3` name, `hf_orig` the DAMO-NLP-SG remote-code (`videollama3_qwen2`) name.
 */
struct TensorName {
  const char* gguf;
  const char* hf_native;
  const char* hf_orig;
  ModelFile file;
  bool per_layer;
  bool optional;  // absent in some checkpoints (output.weight when embeddings are tied)
  Layout layout;
};

inline constexpr TensorName kTensors[] = {
    // ---- language model (llama.cpp `qwen2` names) ----
    {"token_embd.weight", "model.language_model.embed_tokens.weight", "model.embed_tokens.weight", ModelFile::Llm, false, false, Layout::AsIs},
    {"blk.{N}.attn_norm.weight", "model.language_model.layers.{N}.input_layernorm.weight", "model.layers.{N}.input_layernorm.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.attn_q.weight", "model.language_model.layers.{N}.self_attn.q_proj.weight", "model.layers.{N}.self_attn.q_proj.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.attn_q.bias", "model.language_model.layers.{N}.self_attn.q_proj.bias", "model.layers.{N}.self_attn.q_proj.bias", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.attn_k.weight", "model.language_model.layers.{N}.self_attn.k_proj.weight", "model.layers.{N}.self_attn.k_proj.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.attn_k.bias", "model.language_model.layers.{N}.self_attn.k_proj.bias", "model.layers.{N}.self_attn.k_proj.bias", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.attn_v.weight", "model.language_model.layers.{N}.self_attn.v_proj.weight", "model.layers.{N}.self_attn.v_proj.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.attn_v.bias", "model.language_model.layers.{N}.self_attn.v_proj.bias", "model.layers.{N}.self_attn.v_proj.bias", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.attn_output.weight", "model.language_model.layers.{N}.self_attn.o_proj.weight", "model.layers.{N}.self_attn.o_proj.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.ffn_norm.weight", "model.language_model.layers.{N}.post_attention_layernorm.weight", "model.layers.{N}.post_attention_layernorm.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.ffn_gate.weight", "model.language_model.layers.{N}.mlp.gate_proj.weight", "model.layers.{N}.mlp.gate_proj.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.ffn_up.weight", "model.language_model.layers.{N}.mlp.up_proj.weight", "model.layers.{N}.mlp.up_proj.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"blk.{N}.ffn_down.weight", "model.language_model.layers.{N}.mlp.down_proj.weight", "model.layers.{N}.mlp.down_proj.weight", ModelFile::Llm, true, false, Layout::AsIs},
    {"output_norm.weight", "model.language_model.norm.weight", "model.norm.weight", ModelFile::Llm, false, false, Layout::AsIs},
    {"output.weight", "lm_head.weight", "lm_head.weight", ModelFile::Llm, false, true, Layout::AsIs},
    // ---- vision encoder (SigLIP NaViT) ----
    {"v.patch_embd.weight", "model.vision_model.embeddings.patch_embedding.weight", "model.vision_encoder.embeddings.patch_embedding.weight", ModelFile::Vision, false, false, Layout::FlattenConv},
    {"v.patch_embd.bias", "model.vision_model.embeddings.patch_embedding.bias", "model.vision_encoder.embeddings.patch_embedding.bias", ModelFile::Vision, false, false, Layout::AsIs},
    {"v.blk.{N}.ln1.weight", "model.vision_model.encoder.layers.{N}.layer_norm1.weight", "model.vision_encoder.encoder.layers.{N}.layer_norm1.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.ln1.bias", "model.vision_model.encoder.layers.{N}.layer_norm1.bias", "model.vision_encoder.encoder.layers.{N}.layer_norm1.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_q.weight", "model.vision_model.encoder.layers.{N}.self_attn.q_proj.weight", "model.vision_encoder.encoder.layers.{N}.self_attn.q_proj.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_q.bias", "model.vision_model.encoder.layers.{N}.self_attn.q_proj.bias", "model.vision_encoder.encoder.layers.{N}.self_attn.q_proj.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_k.weight", "model.vision_model.encoder.layers.{N}.self_attn.k_proj.weight", "model.vision_encoder.encoder.layers.{N}.self_attn.k_proj.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_k.bias", "model.vision_model.encoder.layers.{N}.self_attn.k_proj.bias", "model.vision_encoder.encoder.layers.{N}.self_attn.k_proj.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_v.weight", "model.vision_model.encoder.layers.{N}.self_attn.v_proj.weight", "model.vision_encoder.encoder.layers.{N}.self_attn.v_proj.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_v.bias", "model.vision_model.encoder.layers.{N}.self_attn.v_proj.bias", "model.vision_encoder.encoder.layers.{N}.self_attn.v_proj.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_out.weight", "model.vision_model.encoder.layers.{N}.self_attn.out_proj.weight", "model.vision_encoder.encoder.layers.{N}.self_attn.out_proj.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.attn_out.bias", "model.vision_model.encoder.layers.{N}.self_attn.out_proj.bias", "model.vision_encoder.encoder.layers.{N}.self_attn.out_proj.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.ln2.weight", "model.vision_model.encoder.layers.{N}.layer_norm2.weight", "model.vision_encoder.encoder.layers.{N}.layer_norm2.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.ln2.bias", "model.vision_model.encoder.layers.{N}.layer_norm2.bias", "model.vision_encoder.encoder.layers.{N}.layer_norm2.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.ffn_up.weight", "model.vision_model.encoder.layers.{N}.mlp.fc1.weight", "model.vision_encoder.encoder.layers.{N}.mlp.fc1.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.ffn_up.bias", "model.vision_model.encoder.layers.{N}.mlp.fc1.bias", "model.vision_encoder.encoder.layers.{N}.mlp.fc1.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.ffn_down.weight", "model.vision_model.encoder.layers.{N}.mlp.fc2.weight", "model.vision_encoder.encoder.layers.{N}.mlp.fc2.weight", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.blk.{N}.ffn_down.bias", "model.vision_model.encoder.layers.{N}.mlp.fc2.bias", "model.vision_encoder.encoder.layers.{N}.mlp.fc2.bias", ModelFile::Vision, true, false, Layout::AsIs},
    {"v.post_ln.weight", "model.vision_model.post_layernorm.weight", "model.vision_encoder.post_layernorm.weight", ModelFile::Vision, false, false, Layout::AsIs},
    {"v.post_ln.bias", "model.vision_model.post_layernorm.bias", "model.vision_encoder.post_layernorm.bias", ModelFile::Vision, false, false, Layout::AsIs},
    // ---- projector (mlp2x_gelu: readout.0 -> GELU(erf) -> readout.2) ----
    {"mm.0.weight", "model.projector.readout.0.weight", "model.mm_projector.readout.0.weight", ModelFile::Vision, false, false, Layout::AsIs},
    {"mm.0.bias", "model.projector.readout.0.bias", "model.mm_projector.readout.0.bias", ModelFile::Vision, false, false, Layout::AsIs},
    {"mm.2.weight", "model.projector.readout.2.weight", "model.mm_projector.readout.2.weight", ModelFile::Vision, false, false, Layout::AsIs},
    {"mm.2.bias", "model.projector.readout.2.bias", "model.mm_projector.readout.2.bias", ModelFile::Vision, false, false, Layout::AsIs},
};
inline constexpr size_t kTensorCount = sizeof(kTensors) / sizeof(kTensors[0]);

/**
 * Metadata keys: X(id, key). llama.cpp's own keys in the LLM file (architecture "qwen2");
 * `vl3.*` keys are ours, in the vision file (architecture "videollama3-vision").
 * The addon exports this list to TypeScript as `names().keys` (camelCase ids).
 */
#define VL3_GGUF_KEYS(X) \
  X(architecture, "general.architecture") \
  X(name, "general.name") \
  X(fileType, "general.file_type") \
  X(quantVersion, "general.quantization_version") \
  X(alignment, "general.alignment") \
  X(contextLength, "qwen2.context_length") \
  X(embeddingLength, "qwen2.embedding_length") \
  X(blockCount, "qwen2.block_count") \
  X(feedForwardLength, "qwen2.feed_forward_length") \
  X(headCount, "qwen2.attention.head_count") \
  X(headCountKv, "qwen2.attention.head_count_kv") \
  X(ropeFreqBase, "qwen2.rope.freq_base") \
  X(rmsEps, "qwen2.attention.layer_norm_rms_epsilon") \
  X(tokModel, "tokenizer.ggml.model") \
  X(tokPre, "tokenizer.ggml.pre") \
  X(tokTokens, "tokenizer.ggml.tokens") \
  X(tokTypes, "tokenizer.ggml.token_type") \
  X(tokMerges, "tokenizer.ggml.merges") \
  X(tokBos, "tokenizer.ggml.bos_token_id") \
  X(tokEos, "tokenizer.ggml.eos_token_id") \
  X(tokPad, "tokenizer.ggml.padding_token_id") \
  X(tokAddBos, "tokenizer.ggml.add_bos_token") \
  X(chatTemplate, "tokenizer.chat_template") \
  X(eosIds, "vl3.generation.eos_token_ids") \
  X(visionEmbeddingLength, "vl3.vision.embedding_length") \
  X(visionFeedForwardLength, "vl3.vision.feed_forward_length") \
  X(visionBlockCount, "vl3.vision.block_count") \
  X(visionHeadCount, "vl3.vision.attention.head_count") \
  X(visionLayerNormEps, "vl3.vision.attention.layer_norm_epsilon") \
  X(visionPatchSize, "vl3.vision.patch_size") \
  X(visionChannels, "vl3.vision.num_channels") \
  X(visionRopeTheta, "vl3.vision.rope.freq_base") \
  X(projectorType, "vl3.projector.type") \
  X(projectorOutput, "vl3.projector.output_length") \
  X(imageMean, "vl3.preprocess.image_mean") \
  X(imageStd, "vl3.preprocess.image_std") \
  X(imageMinPixels, "vl3.preprocess.image.min_pixels") \
  X(imageMaxPixels, "vl3.preprocess.image.max_pixels") \
  X(imageMergeSize, "vl3.preprocess.image.merge_size") \
  X(videoMinPixels, "vl3.preprocess.video.min_pixels") \
  X(videoMaxPixels, "vl3.preprocess.video.max_pixels") \
  X(videoMergeSize, "vl3.preprocess.video.merge_size") \
  X(videoFps, "vl3.preprocess.video.fps") \
  X(videoMinFrames, "vl3.preprocess.video.min_frames") \
  X(videoMaxFrames, "vl3.preprocess.video.max_frames") \
  X(videoPruneThreshold, "vl3.preprocess.video.prune_threshold") \
  X(videoUseCompression, "vl3.preprocess.video.use_token_compression") \
  X(imageTokenId, "vl3.image_token_id") \
  X(videoTokenId, "vl3.video_token_id") \
  X(sourceLayout, "vl3.source_layout")

namespace key {
#define VL3_GGUF_KEY_CONSTANT(id, str) inline constexpr const char* id = str;
VL3_GGUF_KEYS(VL3_GGUF_KEY_CONSTANT)
#undef VL3_GGUF_KEY_CONSTANT
}  // namespace key

/**
 * Tensors the decoder builds at load time from GGUF tensors of one layer (`{N}`), concatenated
 * along their rows: one matmul for q/k/v and one for gate/up instead of five. Not in any file.
 */
namespace fused {
inline constexpr const char* attn_qkv_weight = "blk.{N}.attn_qkv.weight";  // attn_q, attn_k, attn_v
inline constexpr const char* attn_qkv_bias = "blk.{N}.attn_qkv.bias";      // their biases
inline constexpr const char* ffn_gate_up = "blk.{N}.ffn_gate_up.weight";   // ffn_gate, ffn_up
}  // namespace fused

}  // namespace vl3::names
