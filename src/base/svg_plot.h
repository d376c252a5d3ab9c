// Minimal SVG line charts for reports (hit ratio vs capacity, latency vs capacity, ...): axes with
// ticks, one polyline with markers per series, a legend. Log-scale x is available.
#pragma once
#include <string>
#include <vector>

namespace kvwise {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  bool dashed = false;
};

struct PlotSpec {
  std::string title, x_label, y_label;
  bool log_x = false;
  bool y_from_zero = true;
  std::vector<PlotSeries> series;
};

std::string render_svg(const PlotSpec& spec);
void write_svg(const PlotSpec& spec, const std::string& path);  // throws kvwise::Error on I/O failure

// A heatmap (e.g. needle-in-a-haystack accuracy over context length x needle depth): values[row][col]
// coloured from white (vmin) to dark blue (vmax), each cell labelled with its value.
struct HeatmapSpec {
  std::string title, x_label, y_label;
  std::vector<std::string> x_ticks, y_ticks;  // columns, rows
  std::vector<std::vector<double>> values;
  double vmin = 0, vmax = 1;
};
std::string render_heatmap_svg(const HeatmapSpec& spec);
void write_heatmap_svg(const HeatmapSpec& spec, const std::string& path);

}  // namespace kvwise
