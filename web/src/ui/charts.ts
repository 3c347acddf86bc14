import {
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  DoughnutController,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
  type ChartType,
} from "chart.js";

Chart.register(ArcElement, BarController, BarElement, CategoryScale, DoughnutController, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);
Chart.defaults.font.family = getComputedStyle(document.documentElement).getPropertyValue("--font") || "system-ui";
Chart.defaults.color = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() || "#5b6579";

export function chart<T extends ChartType>(canvas: HTMLCanvasElement, config: ChartConfiguration<T>): Chart<T> {
  const existing = Chart.getChart(canvas);
  existing?.destroy();
  return new Chart<T>(canvas, { ...config, options: { responsive: true, maintainAspectRatio: false, animation: { duration: 250 }, ...config.options } } as ChartConfiguration<T>);
}

export { Chart };
