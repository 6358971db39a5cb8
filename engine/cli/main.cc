// salvo: the command-line entry point. See commands.h for the layout.
#include <sys/stat.h>
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "engine/cli/commands.h"
#include "engine/common/log.h"
#include "salvo_version.h"

namespace salvo::cli {

namespace {
bool g_json_errors = false;  // --json anywhere on the line: errors as JSON too
}  // namespace

void PrintError(std::string_view message) {
  std::string line(message);
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  line = Printable(line);
  if (g_json_errors) {
    nlohmann::json j = {{"error", line}};
    std::fprintf(stderr, "%s\n",
                 j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::fprintf(stderr, "salvo: error: %s\n", line.c_str());
}

namespace {

int Main(int argc, char** argv) {
  // Private by default: the spool, logs, saved copies and sockets are
  // readable by their owner only (issue 16 item 3).
  ::umask(077);
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--json") g_json_errors = true;
  // `--json` is each command's own flag; written before the command
  // ("salvo --json campaign list") it is moved to the end of the line, so it
  // works anywhere like --log-level.
  std::vector<char*> args(argv, argv + argc);
  {
    std::vector<char*> moved;
    for (size_t i = 1; i < args.size(); ++i) {
      std::string_view arg = args[i];
      if (arg == "--log-level") {
        ++i;
        continue;
      }
      if (!arg.starts_with("-")) break;  // the command: its own flags follow
      if (arg == "--json") {
        moved.push_back(args[i]);
        args.erase(args.begin() + static_cast<std::ptrdiff_t>(i--));
      }
    }
    args.insert(args.end(), moved.begin(), moved.end());
    argc = static_cast<int>(args.size());
    argv = args.data();
  }
  CLI::App app{"Salvo: a high-throughput bulk email sending engine", "salvo"};
  app.set_version_flag("-V,--version", std::string("salvo ") + SALVO_VERSION);
  app.require_subcommand(1);
  app.fallthrough(true);  // --log-level anywhere on the line (subcommands inherit this)
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug|info|warning|error|off")
      ->default_val("info")
      ->check(CLI::IsMember({"debug", "info", "warning", "warn", "error", "off"}));
  app.footer("Exit codes: 0 ok, 1 runtime failure, 2 usage error.");

  CommandContext ctx;
  RegisterSinkCommand(app, ctx);
  RegisterDkimCommands(app, ctx);
  RegisterCampaignCommands(app, ctx);
  RegisterPreviewCommand(app, ctx);
  RegisterRunCommands(app, ctx);
  RegisterBenchCommand(app, ctx);
  RegisterFleetCommands(app, ctx);
  RegisterShapingCommands(app, ctx);
  // Parse first, then apply the log level, then run the chosen subcommand:
  // CLI11 runs callbacks inside parse(), so set the level in a pre-callback.
  app.parse_complete_callback([&] {
    LogLevel level;
    if (ParseLogLevel(log_level, &level)) SetLogLevel(level);
  });

  // CLI11 reports an unknown command word as "A subcommand is required",
  // which hides the typo: walk the words and name it, with the command it was
  // given to. Option values are skipped (an option that takes a value and is
  // written "--opt value" consumes the next word).
  {
    const CLI::App* current = &app;
    std::string path = "salvo";
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg == "--") break;
      if (arg.starts_with("-")) {
        if (arg.find('=') == std::string_view::npos) {
          for (const CLI::App* a = current; a != nullptr; a = a->get_parent()) {
            const CLI::Option* o = a->get_option_no_throw(std::string(arg));
            if (o != nullptr) {
              if (o->get_items_expected_min() > 0) ++i;
              break;
            }
          }
        }
        continue;
      }
      if (current->get_subcommands({}).empty()) break;  // a positional argument
      const CLI::App* next = nullptr;
      for (const CLI::App* sub : current->get_subcommands({}))
        if (sub->check_name(std::string(arg))) next = sub;
      if (next == nullptr) {
        PrintError("unknown command '" + std::string(arg) + "' for '" + path + "' (run '" + path +
                   " --help')");
        return kExitUsage;
      }
      current = next;
      path += " " + current->get_name();
    }
    if (current != &app && !current->get_subcommands({}).empty() &&
        current->get_require_subcommand_min() > 0) {
      bool wants_help = false;
      for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h")
          wants_help = true;
      if (!wants_help) {
        std::string names;
        for (const CLI::App* sub : current->get_subcommands({}))
          names += (names.empty() ? "" : ", ") + sub->get_name();
        PrintError("'" + path + "' needs a command: " + names + " (run '" + path + " --help')");
        return kExitUsage;
      }
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    PrintError(std::string(e.what()) + " (run 'salvo --help')");
    return kExitUsage;
  }
  return ctx.exit_code;
}

}  // namespace
}  // namespace salvo::cli

int main(int argc, char** argv) { return salvo::cli::Main(argc, argv); }
