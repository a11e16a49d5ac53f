// @ts-check
/**
 * A job's two charts: completions over time (as this page saw them arrive) and each finished item's
 * latency by input index.
 */
import { h } from "preact"
import { useMemo } from "preact/hooks"
import htm from "htm"
import { axes, Chart, fromZero, padHalf, palette } from "./charts.js"

const html = htm.bind(h)

/** @typedef {import("./types.js").ItemResult} ItemResult */

/**
 * The x axis ticks whole numbers only (input indexes).
 * @param {import("uplot").Axis[]} list
 */
const integerX = ([x, ...rest]) => [{ ...x, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }, ...rest]

/**
 * @typedef {object} JobChartsProps
 * @property {[number, number][]} timeline [ms, completed] as the page saw them
 * @property {ItemResult[]} results finished results sorted by index
 * @property {number} completed
 * @property {boolean} endedBeforeOpen only the job's start and end are known
 * @property {number} version changes whenever the data did (the arrays are mutated in place)
 */

/** @param {JobChartsProps} props */
export const JobCharts = ({ timeline, results, completed, endedBeforeOpen, version }) => {
  const colors = palette()
  const completions = useMemo(() => {
    /** @type {[number[], number[]]} */
    const data = [[], []]
    const start = timeline[0]?.[0] ?? 0
    let lastX = 0
    for (const [at, completed] of timeline) {
      const x = Math.max((at - start) / 1000, lastX) // uPlot needs x ascending; clocks may disagree slightly
      data[0].push(x)
      data[1].push(completed)
      lastX = x
    }
    return data
  }, [version])
  const latency = useMemo(() => {
    /** @type {[number[], (number | null)[], (number | null)[]]} */
    const data = [[], [], []]
    for (const r of results) {
      data[0].push(r.index)
      data[1].push(r.status === "succeeded" ? r.durationMs / 1000 : null)
      data[2].push(r.status === "succeeded" ? null : r.durationMs / 1000)
    }
    return data
  }, [version])
  const points = { show: true, size: 5 }
  return html`
    <div class="charts">
      <${Chart}
        testid="chart-completions"
        title="Completions over time"
        summary=${`Completed items over time, ${completed} so far`}
        data=${completions}
        note=${endedBeforeOpen ? "The job ended before this page opened: only its start and end are known." : undefined}
        options=${{
          scales: { x: { time: false }, y: { range: fromZero } },
          axes: axes("items", "seconds since start"),
          legend: { show: false },
          series: [{}, { label: "completed", stroke: colors[0], width: 2, fill: `${colors[0]}22`, points: { show: false } }]
        }}
      />
      <${Chart}
        testid="chart-latency"
        title="Item latency (s) by input index"
        summary="Each finished item's duration in seconds, by its position in the input"
        data=${latency}
        options=${{
          scales: { x: { time: false, range: padHalf }, y: { range: fromZero } },
          axes: integerX(axes("seconds", "input index")),
          series: [
            { label: "item" },
            { label: "succeeded", stroke: colors[2], paths: () => null, points },
            { label: "failed", stroke: colors[1], paths: () => null, points }
          ]
        }}
      />
    </div>
  `
}
