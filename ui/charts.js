// @ts-check
/**
 * Small uPlot charts as Preact components: created once per mount, fed new data with `setData`,
 * sized to their container (phone widths included) and destroyed on unmount. Colours come from the
 * stylesheet's custom properties, so light and dark schemes both read.
 */
import { h } from "preact"
import { useEffect, useRef } from "preact/hooks"
import htm from "htm"
import uPlot from "uplot"

const html = htm.bind(h)

/** @param {string} name @param {string} fallback */
export const cssColor = (name, fallback) => {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim()
  return value === "" ? fallback : value
}

/** The palette series are drawn with, in order. */
export const palette = () => [
  cssColor("--chart-1", "#2563eb"),
  cssColor("--chart-2", "#dc2626"),
  cssColor("--chart-3", "#16a34a"),
  cssColor("--chart-4", "#9333ea"),
  cssColor("--chart-5", "#ea580c")
]

/**
 * Axes drawn in the page's text and grid colours.
 * @param {string} [yLabel]
 * @param {string} [xLabel]
 * @returns {uPlot.Axis[]}
 */
export const axes = (yLabel, xLabel) => {
  const stroke = cssColor("--muted", "#6b7280")
  const grid = { stroke: cssColor("--grid", "#e5e7eb"), width: 1 }
  const ticks = { stroke: grid.stroke, width: 1 }
  return [
    { stroke, grid, ticks, ...(xLabel === undefined ? {} : { label: xLabel, labelSize: 18 }) },
    { stroke, grid, ticks, size: 48, ...(yLabel === undefined ? {} : { label: yLabel, labelSize: 18 }) }
  ]
}

/**
 * A y range from 0 to a little above the data (counts and durations read wrong off a floating axis).
 * @type {uPlot.Range.Function}
 */
export const fromZero = (_plot, _min, max) => [0, max > 0 ? max * 1.1 : 1]

/**
 * Half a step of room on both sides, so points on the first and last index are not cut in half.
 * @type {uPlot.Range.Function}
 */
export const padHalf = (_plot, min, max) => [min - 0.5, max + 0.5]

/**
 * @typedef {object} ChartProps
 * @property {string} testid
 * @property {string} title visible caption and the chart's accessible name
 * @property {string} [summary] a one-line text equivalent for screen readers
 * @property {Omit<uPlot.Options, "width" | "height">} options read once, at mount (give the component a
 *   new `key` when the series change)
 * @property {uPlot.AlignedData} data
 * @property {number} [height]
 * @property {string} [note] a line under the chart (what it cannot show)
 */

/** @param {ChartProps} props */
export const Chart = ({ testid, title, summary, options, data, height = 180, note }) => {
  const container = useRef(/** @type {HTMLDivElement | null} */ (null))
  const plot = useRef(/** @type {uPlot | null} */ (null))
  const latestData = useRef(data)
  latestData.current = data

  useEffect(() => {
    const element = container.current
    if (element === null) return
    const width = () => Math.max(200, Math.floor(element.clientWidth))
    const chart = new uPlot({ ...options, width: width(), height }, latestData.current, element)
    plot.current = chart
    const observer = new ResizeObserver(() => {
      if (Math.abs(chart.width - width()) > 2) chart.setSize({ width: width(), height })
    })
    observer.observe(element)
    return () => {
      observer.disconnect()
      chart.destroy()
      plot.current = null
    }
    // Options are read at mount only; callers change `key` to rebuild.
  }, [])

  useEffect(() => {
    plot.current?.setData(data)
  }, [data])

  return html`
    <figure class="chart" data-testid=${testid}>
      <figcaption>${title}</figcaption>
      <div class="chart-canvas" ref=${container} role="img" aria-label=${summary ?? title}></div>
      ${note === undefined ? null : html`<p class="chart-note">${note}</p>`}
    </figure>
  `
}
