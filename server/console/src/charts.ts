// Charts of the consents export's summary (format=summary: counts only):
// consents per day by event, and the acceptance rate per purpose and per
// country, drawn as inline SVG with a data table beside each for screen
// readers and for copying.
import { getJSON, q } from './api'
import { $, addDays, Child, h, s, say, today } from './dom'
import { errorText, sitePath, state } from './state'
import { RateCount, Summary } from './types'

const events = ['grant', 'partial', 'deny', 'withdraw'] as const
const pct = (r: number) => Math.round(r * 1000) / 10 + '%'

function dataTable(caption: string, head: string[], rows: Child[][]) {
  return h(
    'details',
    null,
    h('summary', null, 'Data table'),
    h(
      'table',
      null,
      h('caption', null, caption),
      h('thead', null, h('tr', null, ...head.map(x => h('th', { scope: 'col' }, x)))),
      h('tbody', null, ...rows.map(r => h('tr', null, ...r.map(v => h('td', null, v))))),
    ),
  )
}

function daysChart(sum: Summary, from: string, to: string) {
  const box = $('chart-days')
  // Every day of the period, with zero where nothing was recorded.
  const byDay: Record<string, Summary['days'][number]> = {}
  for (const d of sum.days) byDay[d.date] = d
  const days: string[] = []
  for (let d = from; d < to && days.length < 400; d = addDays(d, 1)) days.push(d)
  const maxN = Math.max(1, ...days.map(d => (byDay[d] ? byDay[d].records : 0)))
  const W = 760, H = 240, L = 44, B = 28, T = 10
  const bw = (W - L - 8) / Math.max(days.length, 1)
  const y = (n: number) => ((H - B - T) * n) / maxN
  const title = `Consents per day, ${from} to ${addDays(to, -1)}: ${sum.records} records`
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-labelledby': 'cd-title' },
    s('title', { id: 'cd-title' }, title),
    s('line', { class: 'axis', x1: L, y1: H - B, x2: W - 4, y2: H - B }),
    s('text', { x: L - 6, y: T + 10, 'text-anchor': 'end' }, maxN),
    s('text', { x: L - 6, y: H - B, 'text-anchor': 'end' }, 0),
  )
  days.forEach((d, i) => {
    const c = byDay[d]
    let top = H - B
    if (c) {
      for (const ev of events) {
        const n = c[ev]
        if (!n) continue
        const hgt = y(n)
        top -= hgt
        svg.append(s('rect', { class: ev, x: L + i * bw + 1, y: top, width: Math.max(bw - 2, 1), height: hgt },
          s('title', null, `${d}: ${n} ${ev}`)))
      }
    }
    if (days.length <= 31 ? i % 7 === 0 : i % Math.ceil(days.length / 6) === 0) {
      svg.append(s('text', { x: L + i * bw, y: H - 8 }, d.slice(5)))
    }
  })
  box.replaceChildren(
    h('h2', null, 'Consents per day'),
    h('ul', { class: 'legend', 'aria-label': 'Legend' }, ...events.map(ev => h('li', null, h('i', { class: 'sw-' + ev }), ev))),
    svg,
    dataTable('Records per day by event', ['Day', 'Records', ...events],
      days.filter(d => byDay[d]).map(d => [d, byDay[d].records, ...events.map(ev => byDay[d][ev])])),
  )
}

function rateChart(boxId: string, heading: string, rows: RateCount[], label: (k: string) => string) {
  const box = $(boxId)
  const id = boxId + '-title'
  const W = 520, row = 26, L = 110, R = 120
  const H = Math.max(rows.length, 1) * row + 8
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-labelledby': id },
    s('title', { id }, heading + ': ' + (rows.map(r => `${label(r.key)} ${pct(r.rate)}`).join(', ') || 'no data')))
  rows.forEach((r, i) => {
    const y0 = 4 + i * row
    const w = (W - L - R) * r.rate
    svg.append(
      s('text', { x: L - 8, y: y0 + 16, 'text-anchor': 'end' }, label(r.key)),
      s('rect', { class: 'track', x: L, y: y0 + 4, width: W - L - R, height: row - 10 }),
      s('rect', { class: 'bar', x: L, y: y0 + 4, width: Math.max(w, 0), height: row - 10 }),
      s('text', { x: W - R + 8, y: y0 + 16 }, `${pct(r.rate)} of ${r.granted + r.denied}`),
    )
  })
  box.replaceChildren(
    h('h2', null, heading),
    rows.length ? svg : h('p', null, 'No choice of an optional purpose in this period.'),
    dataTable(heading, ['', 'Records', 'Granted', 'Denied', 'Rate'],
      rows.map(r => [label(r.key), r.records, r.granted, r.denied, pct(r.rate)])),
  )
}

async function load() {
  const msg = $('chart-msg')
  if (!state.site) {
    say(msg, 'There is no site yet: create one under Sites.')
    return
  }
  const from = ($('c-from') as HTMLInputElement).value
  const to = ($('c-to') as HTMLInputElement).value
  if (!from || !to || to <= from) {
    say(msg, 'Choose a period whose end is after its start.', 'error')
    return
  }
  say(msg, 'Loading…')
  try {
    const sum = await getJSON<Summary>(sitePath('/consents?') + q({ format: 'summary', from, to }))
    daysChart(sum, from, to)
    rateChart('chart-purposes', 'Acceptance rate per purpose', sum.purposes, k => k)
    rateChart('chart-countries', 'Acceptance rate per country', sum.countries.slice(0, 15), k => k)
    say(msg, `${sum.records} records from ${from} to ${addDays(to, -1)} (UTC).` +
      (sum.countries.length > 15 ? ' The 15 countries with the most records are shown.' : ''))
  } catch (e) {
    say(msg, errorText(e), 'error')
  }
}

export function init() {
  const to = addDays(today(), 1)
  ;($('c-to') as HTMLInputElement).value = to
  ;($('c-from') as HTMLInputElement).value = addDays(to, -30)
  $('chart-filters').addEventListener('submit', e => {
    e.preventDefault()
    load()
  })
}

export const show = load
