#include "cli_conventions.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <new>
#include <sstream>

#include "base/error.h"

namespace kvwise::cli {

std::vector<std::string> translate_llamacpp_flags(const std::vector<std::string>& args) {
  static const std::map<std::string, std::string> names = {
      {"-ctk", "--cache-type-k"}, {"-ctv", "--cache-type-v"}, {"-np", "--parallel"},
      {"-fa", "--flash-attn"},    {"-ngl", "--n-gpu-layers"},
  };
  std::vector<std::string> out;
  out.reserve(args.size());
  for (const std::string& a : args) {
    const size_t eq = a.find('=');
    auto it = names.find(a.substr(0, eq));
    out.push_back(it == names.end() ? a : it->second + (eq == std::string::npos ? "" : a.substr(eq)));
  }
  return out;
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The best of `names` for `typed`: a name that starts with it, else the nearest within a third of
// its length.
std::string closest(const std::vector<std::string>& names, const std::string& typed) {
  std::string best;
  size_t best_d = std::max<size_t>(2, typed.size() / 3) + 1;
  for (const std::string& n : names) {
    if (typed.size() >= 3 && n.rfind(typed, 0) == 0) return n;
    const size_t d = edit_distance(n, typed);
    if (d < best_d) best_d = d, best = n;
  }
  return best;
}

// The subcommand the arguments name (eval niah: the innermost), or the app itself.
CLI::App* selected_command(CLI::App& app, const std::vector<std::string>& args) {
  CLI::App* cur = &app;
  for (const std::string& a : args) {
    if (a.empty() || a[0] == '-') continue;
    CLI::App* sub = nullptr;
    for (CLI::App* s : cur->get_subcommands([](CLI::App*) { return true; }))
      if (s->get_name() == a) sub = s;
    if (sub == nullptr) break;
    cur = sub;
  }
  return cur;
}

std::string command_path(const CLI::App* cmd) {
  std::string path;
  for (const CLI::App* c = cmd; c != nullptr && c->get_parent() != nullptr; c = c->get_parent())
    path = c->get_name() + (path.empty() ? "" : " " + path);
  return path.empty() ? "kvwise" : "kvwise " + path;
}

// The argument to name from an ExtrasError's message ("The following arguments were not expected:
// 64 --ctx-sise"; CLI11 lists them last first): the first that looks like a flag, else the last.
std::string first_extra(const std::string& message) {
  const size_t colon = message.find(": ");
  if (colon == std::string::npos) return "";
  std::istringstream words(message.substr(colon + 2));
  std::string w, last;
  std::vector<std::string> all;
  while (words >> w) all.push_back(w);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (it->rfind("-", 0) == 0) return *it;
  return all.empty() ? "" : all.back();
}

}  // namespace

std::string closest_option(const CLI::App& cmd, const std::string& typed) {
  std::vector<std::string> names;
  const std::string bare = typed.substr(0, typed.find('='));
  for (const CLI::Option* o : cmd.get_options()) {
    for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
    for (const std::string& s : o->get_snames()) names.push_back("-" + s);
  }
  return closest(names, bare);
}

std::string closest_subcommand(const CLI::App& app, const std::string& typed) {
  std::vector<std::string> names;
  for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(s->get_name());
  return closest(names, typed);
}

int run_command_line(CLI::App& app, int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  args = translate_llamacpp_flags(args);
  if (args.empty()) {  // no command: say what there is
    std::fprintf(stderr, "%s\nkvwise: error: a command is required (try: kvwise demo)\n", app.help().c_str());
    return 2;
  }
  CLI::App* cmd = selected_command(app, args);
  // A first word that is no subcommand: name it (CLI11 would only say that one is required).
  if (cmd == &app && !args.empty() && !args[0].empty() && args[0][0] != '-') {
    const std::string hint = closest_subcommand(app, args[0]);
    std::fprintf(stderr, "kvwise: error: unknown command '%s'%s\nRun 'kvwise --help' for the list of commands.\n",
                 args[0].c_str(), hint.empty() ? "" : (" (did you mean '" + hint + "'?)").c_str());
    return 2;
  }
  // GPU offload is llama.cpp's; asking for it here must not be read as something else (-ngl would
  // otherwise parse as -n gl) nor be ignored.
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--n-gpu-layers", 0) != 0 && a.rfind("--gpu-layers", 0) != 0) continue;
    const size_t eq = a.find('=');
    const std::string v = eq != std::string::npos ? a.substr(eq + 1) : i + 1 < args.size() ? args[i + 1] : "";
    if (v == "0") {
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(eq != std::string::npos ? i + 1 : i + 2));
      --i;
      continue;
    }
    std::fprintf(stderr,
                 "kvwise: error: -ngl/--n-gpu-layers %s: kvwise runs on the CPU only, there are no layers to "
                 "offload (drop the flag, or give 0)\n",
                 v.c_str());
    return 2;
  }
  std::vector<char*> cargv{argv[0]};
  for (std::string& a : args) cargv.push_back(a.data());
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError& e) {
    const std::string typed = first_extra(e.what());
    const std::string hint = typed.rfind('-', 0) == 0 ? closest_option(*cmd, typed) : "";
    std::fprintf(stderr, "%s: error: unknown option or argument '%s'%s\nRun '%s --help' for its options.\n",
                 command_path(cmd).c_str(), typed.c_str(),
                 hint.empty() ? "" : (" (did you mean " + hint + "?)").c_str(), command_path(cmd).c_str());
    return 2;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "%s: error: %s\nRun '%s --help' for its options.\n", command_path(cmd).c_str(), e.what(),
                 command_path(cmd).c_str());
    return 2;
  } catch (const kvwise::Error& e) {
    std::fprintf(stderr, "kvwise: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kvwise: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvwise: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace kvwise::cli
