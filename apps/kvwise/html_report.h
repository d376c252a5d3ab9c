// One self-contained HTML page from a directory of results: every JSON file as tables (arrays of
// objects become tables, scalars a key/value list), every SVG plot inlined. Used by `kvwise report
// DIR` and `kvwise demo`. Reads only the directory given; writes only its report.html.
#pragma once
#include <string>

namespace kvwise::cli {

std::string render_html_report(const std::string& dir, const std::string& title);
// Writes dir/report.html (or `out` when given) and returns its path.
std::string write_html_report(const std::string& dir, const std::string& title, const std::string& out = "");

}  // namespace kvwise::cli
