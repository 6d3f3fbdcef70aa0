# A shim so that `node-gyp rebuild` (and node-gyp-build's install fallback) work.
# CMakeLists.txt is the one build description; this only runs scripts/build-native.mjs.
{
  "targets": [
    {
      "target_name": "videollama3",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_js_build",
          "inputs": ["CMakeLists.txt", "scripts/build-native.mjs", "scripts/fetch-ggml.mjs"],
          "outputs": ["<(PRODUCT_DIR)/videollama3.node"],
          "action": ["node", "scripts/build-native.mjs", "--out", "<(PRODUCT_DIR)"]
        }
      ]
    }
  ]
}
