#include "base/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include "base/error.h"

namespace kvwise {

namespace {
const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else
      o += c;
  }
  return o;
}

std::string tick_label(double v) {
  if (v != 0 && (std::fabs(v) >= 1e5 || std::fabs(v) < 1e-2)) return fmt::format("{:.1e}", v);
  if (std::fabs(v - std::round(v)) < 1e-9) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}
}  // namespace

std::string render_svg(const PlotSpec& p) {
  const double W = 760, H = 440, L = 80, R = 200, T = 40, B = 60;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : p.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (p.log_x && s.x[i] <= 0)) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (p.y_from_zero) y0 = std::min(0.0, y0);
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  y1 += (y1 - y0) * 0.05;
  const auto fx = [&](double x) {
    const double t = p.log_x ? (std::log(x) - std::log(x0)) / (std::log(x1) - std::log(x0)) : (x - x0) / (x1 - x0);
    return L + t * (W - L - R);
  };
  const auto fy = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H);
  s += fmt::format("<text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n", (L + W - R) / 2,
                   escape(p.title));
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", L, H - B, W - R);
  s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", L, T, H - B);
  // y ticks at a "nice" step (1, 2 or 5 times a power of ten), about five of them.
  const double raw = (y1 - y0) / 5.0, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  for (double v = std::ceil(y0 / step) * step; v <= y1 + 1e-12; v += step) {  // y ticks
    s += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
        L, fy(v), W - R, L - 6, fy(v) + 4, tick_label(v));
  }
  std::vector<double> xt;
  for (const auto& se : p.series) xt.insert(xt.end(), se.x.begin(), se.x.end());
  std::sort(xt.begin(), xt.end());
  xt.erase(std::unique(xt.begin(), xt.end()), xt.end());
  if (xt.size() > 10) {
    std::vector<double> thin;
    for (size_t i = 0; i < xt.size(); i += (xt.size() + 9) / 10) thin.push_back(xt[i]);
    xt = thin;
  }
  for (double v : xt) {
    if (p.log_x && v <= 0) continue;
    s +=
        fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", fx(v), H - B + 18, tick_label(v));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (L + W - R) / 2, H - 16,
                   escape(p.x_label + (p.log_x ? " (log scale)" : "")));
  s += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   (T + H - B) / 2, escape(p.y_label));
  for (size_t k = 0; k < p.series.size(); ++k) {
    const auto& se = p.series[k];
    const char* color = kColors[k % 10];
    std::string pts;
    for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i) {
      if (!std::isfinite(se.y[i]) || (p.log_x && se.x[i] <= 0)) continue;
      pts += fmt::format("{:.1f},{:.1f} ", fx(se.x[i]), fy(se.y[i]));
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", fx(se.x[i]), fy(se.y[i]), color);
    }
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", pts, color,
                     se.dashed ? " stroke-dasharray=\"6,4\"" : "");
    const double ly = T + 10 + 20.0 * static_cast<double>(k);
    s += fmt::format(
        "<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"{}/>"
        "<text x=\"{}\" y=\"{:.1f}\">{}</text>\n",
        W - R + 15, ly, W - R + 40, ly, color, se.dashed ? " stroke-dasharray=\"6,4\"" : "", W - R + 46, ly + 4,
        escape(se.name));
  }
  return s + "</svg>\n";
}

std::string render_heatmap_svg(const HeatmapSpec& p) {
  const size_t rows = p.values.size(), cols = rows ? p.values[0].size() : 0;
  const double L = 90, T = 40, B = 60, cell_w = std::max(40.0, 560.0 / std::max<size_t>(1, cols)),
               cell_h = std::max(24.0, 300.0 / std::max<size_t>(1, rows));
  const double W = L + cell_w * static_cast<double>(cols) + 20, H = T + cell_h * static_cast<double>(rows) + B;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{:.0f}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
      W, H, W / 2, escape(p.title));
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols && c < p.values[r].size(); ++c) {
      const double v = p.values[r][c];
      const double t = std::isfinite(v) ? std::clamp((v - p.vmin) / (p.vmax - p.vmin), 0.0, 1.0) : 0.0;
      const int red = static_cast<int>(255 - t * (255 - 8)), green = static_cast<int>(255 - t * (255 - 48)),
                blue = static_cast<int>(255 - t * (255 - 107));
      const double x = L + cell_w * static_cast<double>(c), y = T + cell_h * static_cast<double>(r);
      s += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"rgb({},{},{})\" "
          "stroke=\"#ccc\"/><text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
          x, y, cell_w, cell_h, red, green, blue, x + cell_w / 2, y + cell_h / 2 + 4, t > 0.5 ? "white" : "black",
          std::isfinite(v) ? tick_label(v) : "-");
    }
  for (size_t c = 0; c < cols && c < p.x_ticks.size(); ++c)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                     L + cell_w * (static_cast<double>(c) + 0.5), T + cell_h * static_cast<double>(rows) + 16,
                     escape(p.x_ticks[c]));
  for (size_t r = 0; r < rows && r < p.y_ticks.size(); ++r)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", L - 6,
                     T + cell_h * (static_cast<double>(r) + 0.5) + 4, escape(p.y_ticks[r]));
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                   L + cell_w * static_cast<double>(cols) / 2, H - 18, escape(p.x_label));
  s += fmt::format("<text x=\"16\" y=\"{:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1f})\">{}</text>\n",
                   T + cell_h * static_cast<double>(rows) / 2, T + cell_h * static_cast<double>(rows) / 2,
                   escape(p.y_label));
  return s + "</svg>\n";
}

namespace {
void write_text(const std::string& text, const std::string& path) {
  std::ofstream f(path);
  KV_CHECK(f.good(), "{}: cannot create", path);
  f << text;
  KV_CHECK(f.good(), "{}: write failed", path);
}
}  // namespace

void write_svg(const PlotSpec& spec, const std::string& path) {
  write_text(render_svg(spec), path);
}
void write_heatmap_svg(const HeatmapSpec& spec, const std::string& path) {
  write_text(render_heatmap_svg(spec), path);
}

}  // namespace kvwise
