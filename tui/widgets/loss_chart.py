"""The training loss against the step, with axes: every step faint, an exponential moving
average drawn over it. Long runs are drawn from at most `MAX_POINTS` bucket means."""

from __future__ import annotations

from textual_plotext import PlotextPlot

SMOOTHING = 0.9
MAX_POINTS = 400


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, bias-corrected so it starts at the first value."""
    average, result = 0.0, []
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        result.append(average / (1 - weight ** count))
    return result


def bucketed(values: list[float], limit: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """(steps, values) with at most `limit` points: bucket means for long runs."""
    if len(values) <= limit:
        return [float(step) for step in range(1, len(values) + 1)], list(values)
    size = len(values) / limit
    steps, means = [], []
    for bucket in range(limit):
        start, end = int(bucket * size), int((bucket + 1) * size)
        chunk = values[start:end] or values[start:start + 1]
        steps.append((start + end + 1) / 2)
        means.append(sum(chunk) / len(chunk))
    return steps, means


class LossChart(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._data: list[float] = []

    @property
    def data(self) -> list[float]:
        return self._data

    @data.setter
    def data(self, values: list[float]) -> None:
        self._data = list(values)
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.xlabel("step")
        if self._data:
            steps, values = bucketed(self._data)
            plt.scatter(steps, values, marker="dot", color="gray")
            plt.plot(steps, smoothed(values), color="cyan", label=f"EMA {SMOOTHING:g}")
            x_ticks = step_ticks(len(self._data))
            plt.xticks(x_ticks, [str(tick) for tick in x_ticks])
            y_ticks = value_ticks(min(values), max(values))
            plt.ylim(y_ticks[0], y_ticks[-1])
            plt.yticks(y_ticks, [f"{tick:.3g}" for tick in y_ticks])
        self.refresh()


def step_ticks(steps: int, count: int = 5) -> list[int]:
    """Whole steps, evenly spread from 1 to the last (one tick for one step)."""
    if steps <= 1:
        return [1]
    spacing = max(1, round((steps - 1) / (count - 1)))
    return sorted({1, *range(1 + spacing, steps, spacing), steps})


def value_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round ticks around the values (a single value gets a band around it, not 18 digits)."""
    if high - low < 1e-9:
        spread = max(abs(high) * 0.05, 0.01)
        low, high = low - spread, high + spread
    step = (high - low) / (count - 1)
    return [round(low + step * index, 6) for index in range(count)]
