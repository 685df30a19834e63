// Thin helpers over the vendored Chart.js (window.Chart, loaded before this module).

export const COLORS = {
  blue: "#1f6feb",
  orange: "#e07b00",
  green: "#1a7f37",
  red: "#c62828",
  grey: "#8b95a7",
  faint: "rgba(31, 111, 235, 0.12)",
};

const PALETTE = ["#1f6feb", "#e07b00", "#1a7f37", "#c62828", "#7c3aed", "#0e7490", "#a16207", "#be185d"];

export function color(index) {
  return PALETTE[index % PALETTE.length];
}

/** Draw a chart on a canvas, replacing the one drawn there before. */
export function draw(canvasId, config) {
  const canvas = document.getElementById(canvasId);
  const previous = window.Chart.getChart(canvas);
  if (previous) previous.destroy();
  const options = config.options || {};
  return new window.Chart(canvas, {
    ...config,
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      ...options,
      plugins: { legend: { labels: { boxWidth: 12 } }, ...(options.plugins || {}) },
    },
  });
}

/** A line through (x, y) points on linear axes. */
export function xyLine(xs, ys, label, colour, extra = {}) {
  return {
    label,
    data: xs.map((x, i) => ({ x, y: ys[i] })),
    borderColor: colour,
    backgroundColor: colour,
    pointRadius: 0,
    borderWidth: 2,
    showLine: true,
    ...extra,
  };
}

export function linearAxes(xTitle, yTitle, range = {}) {
  return {
    x: { type: "linear", title: { display: true, text: xTitle }, ...(range.x || {}) },
    y: { type: "linear", title: { display: true, text: yTitle }, ...(range.y || {}) },
  };
}

/** Horizontal bars, for per-feature numbers (contributions, weights, importances). */
export function horizontalBars(canvasId, labels, values, label, colours) {
  return draw(canvasId, {
    type: "bar",
    data: {
      labels,
      datasets: [{ label, data: values, backgroundColor: colours || COLORS.blue }],
    },
    options: {
      indexAxis: "y",
      plugins: { legend: { display: false } },
      scales: { y: { ticks: { autoSkip: false, font: { size: 10 } } } },
    },
  });
}
