// kvwise report DIR: the results JSON and plots of a directory as one HTML page.
#include <cstdio>

#include "common.h"
#include "html_report.h"

namespace kvwise::cli {

void add_report(CLI::App& app) {
  struct Opts {
    std::string dir, out, title = "kvwise results";
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "report", "render a directory of results (JSON from --json runs, SVG plots) into one HTML page");
  cmd->add_option("dir", o->dir, "directory with .json results and .svg plots")->required();
  cmd->add_option("-o,--output", o->out, "HTML file to write (default: DIR/report.html)");
  cmd->add_option("--title", o->title, "page title");
  cmd->callback([o] { std::printf("%s\n", write_html_report(o->dir, o->title, o->out).c_str()); });
}

}  // namespace kvwise::cli
