// A loaded model: the mapped GGUF file, its config, tensor views and tokenizer.
#pragma once
#include <memory>
#include <string>

#include "model/config.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace kvwise {

class Model {
 public:
  // Throws kvwise::Error with a clear message for any unreadable, corrupt or unsupported file.
  static std::unique_ptr<Model> load(const std::string& path);

  const GgufFile& file() const { return *file_; }
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace kvwise
