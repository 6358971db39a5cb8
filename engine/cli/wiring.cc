#include "engine/cli/wiring.h"

#include <sys/resource.h>

#include "engine/message/template.h"

namespace salvo::cli {

queue::TemplateValidator TemplateValidator() {
  return [](std::string_view text, std::string_view path,
            const std::vector<std::string>& columns) -> absl::Status {
    absl::StatusOr<message::Template> t = message::Template::Parse(text, path);
    if (!t.ok()) return t.status();
    return t->CheckColumns(columns);
  };
}

std::vector<dkim::KeySpec> KeySpecsFromConfig(const config::Config& config) {
  std::vector<dkim::KeySpec> specs;
  for (const config::DkimKeyConfig& k : config.dkim_keys) {
    dkim::KeySpec spec;
    spec.domain = k.domain;
    spec.selector = k.selector;
    spec.path = k.key_file;
    spec.expected =
        k.type == config::DkimKeyType::kEd25519 ? dkim::KeyType::kEd25519 : dkim::KeyType::kRsa;
    specs.push_back(std::move(spec));
  }
  return specs;
}

absl::StatusOr<std::shared_ptr<const dkim::KeyStore>> LoadKeys(const config::Config& config) {
  auto keys = dkim::KeyStore::Load(KeySpecsFromConfig(config));
  if (!keys.ok()) return keys.status();
  return std::shared_ptr<const dkim::KeyStore>(std::move(*keys));
}

void RaiseFdLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace salvo::cli
