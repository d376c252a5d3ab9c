#include "html_report.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <vector>

#include "base/error.h"

namespace kvwise::cli {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kMaxRows = 200;  // rows shown per table; the JSON file has the rest

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string scalar(const json& v) {
  if (v.is_string()) return escape(v.get<std::string>());
  if (v.is_number_float()) {
    const double x = v.get<double>();
    std::ostringstream ss;
    ss.precision(std::abs(x) < 1e-3 && x != 0 ? 3 : 6);
    ss << x;
    return ss.str();
  }
  if (v.is_null()) return "";
  std::string d = v.dump();
  return escape(d.size() > 120 ? d.substr(0, 120) + "..." : d);
}

bool is_scalar(const json& v) {
  return !v.is_object() && !v.is_array();
}

bool is_table(const json& v) {
  return v.is_array() && !v.empty() && std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_object(); });
}

void table(std::ostringstream& h, const json& rows) {
  std::vector<std::string> cols;
  std::set<std::string> seen;
  for (const json& r : rows)
    for (const auto& [k, v] : r.items())
      if (seen.insert(k).second) cols.push_back(k);
  h << "<table><tr>";
  for (const auto& c : cols) h << "<th>" << escape(c) << "</th>";
  h << "</tr>\n";
  size_t n = 0;
  for (const json& r : rows) {
    if (++n > kMaxRows) break;
    h << "<tr>";
    for (const auto& c : cols) {
      const auto it = r.find(c);
      const bool num = it != r.end() && it->is_number();
      h << (num ? "<td class=n>" : "<td>") << (it == r.end() ? "" : scalar(*it)) << "</td>";
    }
    h << "</tr>\n";
  }
  h << "</table>\n";
  if (rows.size() > kMaxRows) h << "<p class=note>" << rows.size() - kMaxRows << " more rows in the JSON file</p>\n";
}

void render(std::ostringstream& h, const json& v, int depth) {
  if (is_table(v)) return table(h, v);
  if (v.is_array()) {
    std::string items;
    for (const json& x : v) items += (items.empty() ? "" : ", ") + scalar(x);
    h << "<p>" << (items.size() > 2000 ? items.substr(0, 2000) + " ..." : items) << "</p>\n";
    return;
  }
  if (!v.is_object()) {
    h << "<p>" << scalar(v) << "</p>\n";
    return;
  }
  bool any = false;
  for (const auto& [k, x] : v.items())
    if (is_scalar(x) || (x.is_array() && !is_table(x) && x.size() <= 16)) {
      if (!any) h << "<table class=kv>";
      any = true;
      h << "<tr><th>" << escape(k) << "</th><td>";
      if (is_scalar(x)) {
        h << scalar(x);
      } else {
        std::string items;
        for (const json& e : x) items += (items.empty() ? "" : ", ") + scalar(e);
        h << items;
      }
      h << "</td></tr>\n";
    }
  if (any) h << "</table>\n";
  for (const auto& [k, x] : v.items()) {
    if (is_scalar(x) || (x.is_array() && !is_table(x) && x.size() <= 16)) continue;
    const int level = std::min(depth + 3, 6);
    h << "<h" << level << ">" << escape(k) << "</h" << level << ">\n";
    if (depth >= 4) {
      h << "<p class=note>(nested deeper than the report shows; see the JSON file)</p>\n";
      continue;
    }
    render(h, x, depth + 1);
  }
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string render_html_report(const std::string& dir, const std::string& title) {
  std::error_code ec;
  KV_CHECK(fs::is_directory(dir, ec), "{}: not a directory", dir);
  std::vector<fs::path> jsons, svgs;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const std::string ext = e.path().extension().string();
    if (ext == ".json") jsons.push_back(e.path());
    if (ext == ".svg") svgs.push_back(e.path());
  }
  KV_CHECK(!jsons.empty() || !svgs.empty(), "{}: no .json results or .svg plots to report", dir);
  // The demo's summary first, then by name.
  const auto order = [](const fs::path& a, const fs::path& b) {
    const bool da = a.filename() == "demo.json", db = b.filename() == "demo.json";
    return da != db ? da : a.filename() < b.filename();
  };
  std::sort(jsons.begin(), jsons.end(), order);
  std::sort(svgs.begin(), svgs.end(), order);
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << escape(title) << "</title>\n<style>\n"
    << "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\n"
    << "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}\n"
    << "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}\n"
    << "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    << ".plots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-size:13px;color:#555}\n"
    << ".note{color:#666;font-size:13px}\n</style></head><body>\n";
  h << "<h1>" << escape(title) << "</h1>\n<p class=note>Rendered by <code>kvwise report " << escape(dir)
    << "</code> from " << jsons.size() << " JSON file(s) and " << svgs.size() << " plot(s).</p>\n";
  if (!svgs.empty()) {
    h << "<h2>Plots</h2>\n<div class=plots>\n";
    for (const auto& p : svgs) {
      std::string svg = read_file(p);
      if (svg.rfind("<?xml", 0) == 0) svg = svg.substr(std::min(svg.size(), svg.find("?>") + 2));
      h << "<figure>" << svg << "<figcaption>" << escape(p.filename().string()) << "</figcaption></figure>\n";
    }
    h << "</div>\n";
  }
  for (const auto& p : jsons) {
    h << "<h2>" << escape(p.filename().string()) << "</h2>\n";
    try {
      render(h, json::parse(read_file(p)), 0);
    } catch (const json::exception& e) {
      h << "<p class=note>not readable as JSON: " << escape(e.what()) << "</p>\n";
    }
  }
  h << "</body></html>\n";
  return h.str();
}

std::string write_html_report(const std::string& dir, const std::string& title, const std::string& out) {
  const std::string path = out.empty() ? (fs::path(dir) / "report.html").string() : out;
  const std::string html = render_html_report(dir, title);
  std::ofstream f(path);
  KV_CHECK(f.good(), "{}: cannot create", path);
  f << html;
  KV_CHECK(f.good(), "{}: write failed", path);
  return path;
}

}  // namespace kvwise::cli
