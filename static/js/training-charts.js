// The charts of a train run's page (templates/partials/training_curve.html): one uPlot chart
// per metric, steps on the x axis, with axes, values under the pointer, smoothing (the choice
// kept in localStorage) and other train runs laid over this one. This run's numbers are the
// page's script#training-series, which htmx replaces while the run trains (so there is one
// poll, and it stops when the run finishes); a laid-over run's come from its ?format=json.
// Without scripts the section shows the last steps as a table and the lines as SVG.
(function () {
  "use strict";

  const section = document.getElementById("training-curve");
  if (!section || typeof window.uPlot !== "function") return;
  const uPlot = window.uPlot;
  const controls = section.querySelector(".training-controls");
  const host = section.querySelector(".training-charts");
  const note = section.querySelector(".training-chart-note");
  const picker = section.querySelector("[data-smoothing]");
  const boxes = Array.from(section.querySelectorAll("[data-overlay]"));
  if (!controls || !host) return;

  // The caption names a chart; its y axis takes a short name that fits a phone's chart height.
  const METRICS = [
    { key: "reward_mean", label: "Reward (mean)", axis: "reward" },
    { key: "loss", label: "Loss", axis: "loss" },
    { key: "kl", label: "KL to the parent", axis: "KL" },
    { key: "tokens_per_s", label: "Tokens per second", axis: "tokens/s" },
  ];
  // Each at least 4.5:1 on white; the dashes tell runs apart without their colour.
  const COLOURS = ["#3156d3", "#b54708", "#1e7f4f", "#8e2fa6", "#b42318", "#0e7490", "#4b5563", "#9d174d"];
  const DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3]];
  const INK = "#1d2330";
  const GRID = "#e3e6eb";
  const TICKS = "#98a2b3";
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
  const STORAGE_KEY = "shaping.training.smoothing";
  const STEP_INCREMENTS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2500, 5e3, 1e4, 2e4, 5e4, 1e5];

  let ownText = "";
  let own = readOwn();
  const laid = new Map(); // run id -> its series, for the runs ticked
  let charts = []; // { metric, plot, figure, caption, box, width }
  let shape = "";
  let smoothing = storedSmoothing();

  function readOwn() {
    const data = document.getElementById("training-series");
    if (!data) return null;
    ownText = data.textContent;
    try {
      return JSON.parse(ownText);
    } catch (error) {
      return null;
    }
  }

  function storedSmoothing() {
    let value = null;
    try {
      value = window.localStorage.getItem(STORAGE_KEY);
    } catch (error) {
      value = null; // storage refused (a private window, a policy): the page's default
    }
    if (picker && value && Array.from(picker.options).some((option) => option.value === value)) {
      picker.value = value;
    }
    return picker ? picker.value : "raw";
  }

  function smoothed(values, mode) {
    const [kind, amount] = mode.split(":");
    const n = Number(amount);
    if (kind === "ma" && n > 1) return movingAverage(values, n);
    if (kind === "ema" && n > 0 && n < 1) return exponential(values, n);
    return values.slice();
  }

  // The mean of the last n steps' values (gaps left as gaps, not counted).
  function movingAverage(values, n) {
    const out = new Array(values.length);
    let sum = 0;
    let count = 0;
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      if (value != null) { sum += value; count += 1; }
      const gone = values[i - n];
      if (i >= n && gone != null) { sum -= gone; count -= 1; }
      out[i] = value == null || count === 0 ? null : sum / count;
    }
    return out;
  }

  // An exponential moving average, debiased so that the first steps are not pulled to zero.
  function exponential(values, weight) {
    let last = 0;
    let seen = 0;
    return values.map((value) => {
      if (value == null) return null;
      last = last * weight + (1 - weight) * value;
      seen += 1;
      return last / (1 - Math.pow(weight, seen));
    });
  }

  function number(value) {
    if (value == null || !Number.isFinite(value)) return "—";
    if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en");
    return String(Number(value.toPrecision(4)));
  }

  // The runs drawn, this one first; a run keeps its colour and dash whichever others are ticked.
  function runsShown() {
    const runs = [];
    if (own) runs.push({ series: own, slot: 0, label: own.label + " (this run)" });
    boxes.forEach((box, index) => {
      const series = laid.get(box.value);
      if (box.checked && series) {
        runs.push({ series: series, slot: index + 1, label: box.dataset.label });
      }
    });
    return runs;
  }

  function hasValues(runs, key) {
    return runs.some((run) => (run.series.metrics[key] || []).some((value) => value != null));
  }

  function tables(runs, key) {
    const raw = smoothing !== "raw";
    return runs.map((run, index) => {
      const values = run.series.metrics[key] || [];
      const table = [run.series.steps, smoothed(values, smoothing)];
      if (raw && index === 0) table.push(values);
      return table;
    });
  }

  function seriesOptions(runs) {
    const options = [{ label: "step", value: (u, v) => (v == null ? "—" : String(v)) }];
    runs.forEach((run, index) => {
      const colour = COLOURS[run.slot % COLOURS.length];
      options.push({
        label: run.label,
        stroke: colour,
        width: 2,
        dash: DASHES[run.slot % DASHES.length],
        value: (u, v) => number(v),
        points: { show: false },
      });
      if (smoothing !== "raw" && index === 0) {
        options.push({
          label: `run #${run.series.run} raw`,
          stroke: colour + "55",
          width: 1,
          value: (u, v) => number(v),
          points: { show: false },
        });
      }
    });
    return options;
  }

  // The y axis as wide as its longest label, so that small or large values are not cut off.
  function axisSize(u, values, index, cycle) {
    const axis = u.axes[index];
    if (cycle > 1) return axis._size;
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce((a, b) => (String(b).length > a.length ? String(b) : a), "");
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / (window.devicePixelRatio || 1);
    }
    return Math.ceil(size);
  }

  function axis(label, extra) {
    return Object.assign(
      {
        label: label,
        stroke: INK,
        font: FONT,
        labelFont: "600 " + FONT,
        labelSize: 18,
        grid: { stroke: GRID, width: 1 },
        ticks: { stroke: TICKS, width: 1, size: 5 },
      },
      extra,
    );
  }

  function height(width) {
    return Math.round(Math.min(280, Math.max(200, width * 0.55)));
  }

  function caption(metric, runs) {
    const values = own ? own.metrics[metric.key] || [] : [];
    let i = values.length - 1;
    while (i >= 0 && values[i] == null) i -= 1;
    const parts = [metric.label + " by step"];
    if (i >= 0) parts.push(`step ${own.steps[i]}: ${number(values[i])}`);
    if (runs.length > 1) parts.push(`laid over ${runs.slice(1).map((run) => run.label).join(", ")}`);
    if (smoothing !== "raw" && picker) parts.push(`smoothing: ${picker.selectedOptions[0].textContent}`);
    return parts.join(" · ");
  }

  // What decides the charts and their series: a change here draws them anew, anything else
  // only gives them new data (no flicker while the run trains).
  function shapeOf(runs, metrics) {
    return JSON.stringify([metrics.map((m) => m.key), runs.map((r) => r.slot), smoothing === "raw"]);
  }

  function build() {
    watch.disconnect();
    charts.forEach((chart) => chart.plot.destroy());
    charts = [];
    host.replaceChildren();
    const runs = runsShown();
    const metrics = METRICS.filter((metric) => hasValues(runs, metric.key));
    shape = shapeOf(runs, metrics);
    host.hidden = metrics.length === 0;
    controls.hidden = metrics.length === 0 && boxes.length === 0;
    metrics.forEach((metric) => {
      const figure = document.createElement("figure");
      figure.className = "training-chart";
      const text = document.createElement("figcaption");
      text.id = `training-chart-${metric.key}`;
      text.textContent = caption(metric, runs);
      const plotBox = document.createElement("div");
      plotBox.className = "training-chart-plot";
      figure.append(text, plotBox);
      host.append(figure);
      const width = Math.max(200, Math.floor(plotBox.clientWidth));
      const plot = new uPlot(
        {
          width: width,
          height: height(width),
          scales: { x: { time: false } },
          axes: [
            axis("step", { incrs: STEP_INCREMENTS, space: 48 }),
            axis(metric.axis, { size: axisSize, space: 24 }),
          ],
          series: seriesOptions(runs),
          cursor: {
            sync: { key: `training-${section.dataset.run}` },
            drag: { x: true, y: false },
            // The values at the step under the pointer: a run that logged none there shows "—"
            // rather than its nearest step's.
            dataIdx: (u, seriesIdx, closest) => closest,
          },
          legend: { live: true },
        },
        uPlot.join(tables(runs, metric.key)),
        plotBox,
      );
      const canvas = plot.root.querySelector("canvas");
      if (canvas) {
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-labelledby", text.id);
      }
      const chart = { metric: metric, plot: plot, figure: figure, caption: text, box: plotBox, width: width };
      charts.push(chart);
      watch.observe(plotBox);
    });
  }

  // Zoomed in (a drag across the chart): new steps keep the view; a double click zooms out.
  function zoomed(plot) {
    const xs = plot.data[0];
    const x = plot.scales.x;
    return xs.length > 0 && x.min != null && (x.min > xs[0] || x.max < xs[xs.length - 1]);
  }

  function draw() {
    const runs = runsShown();
    const metrics = METRICS.filter((metric) => hasValues(runs, metric.key));
    if (shapeOf(runs, metrics) !== shape) {
      build();
      return;
    }
    charts.forEach((chart) => {
      chart.plot.setData(uPlot.join(tables(runs, chart.metric.key)), !zoomed(chart.plot));
      chart.caption.textContent = caption(chart.metric, runs);
    });
  }

  // Width follows the container; sizes are set in the next frame, outside the observer's callback.
  let pending = false;
  const watch = new ResizeObserver(() => {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(() => {
      pending = false;
      charts.forEach((chart) => {
        const width = Math.max(200, Math.floor(chart.box.clientWidth));
        if (width !== chart.width) {
          chart.width = width;
          chart.plot.setSize({ width: width, height: height(width) });
        }
      });
    });
  });

  function say(text) {
    if (note) note.textContent = text;
  }

  function load(box) {
    return fetch(box.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return response.json();
      })
      .then((series) => {
        laid.set(box.value, series);
      })
      .catch((error) => {
        box.checked = false;
        say(`${box.dataset.label} could not be loaded (${error.message}).`);
      });
  }

  // While this run trains, ticked runs that are still training are read again with it.
  function refreshLaid() {
    const stale = boxes.filter((box) => box.checked && laid.has(box.value) && !laid.get(box.value).finished);
    return Promise.all(stale.map(load));
  }

  if (picker) {
    picker.addEventListener("change", () => {
      smoothing = picker.value;
      try {
        window.localStorage.setItem(STORAGE_KEY, smoothing);
      } catch (error) {
        // not kept: the choice holds for this page
      }
      draw();
    });
  }

  boxes.forEach((box) => {
    box.addEventListener("change", () => {
      say("");
      if (box.checked && !laid.has(box.value)) {
        box.disabled = true;
        load(box).then(() => {
          box.disabled = false;
          draw();
        });
      } else {
        draw();
      }
    });
  });

  // htmx swaps #training-status (with the series in it) in place while the run trains.
  new MutationObserver(() => {
    const data = document.getElementById("training-series");
    if (!data || data.textContent === ownText) return;
    const next = readOwn();
    if (!next) return;
    own = next;
    refreshLaid().then(draw);
  }).observe(section, { childList: true });

  Promise.all(boxes.filter((box) => box.checked).map(load)).then(build);
})();
