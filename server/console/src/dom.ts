// Small DOM helpers. Every value from the ledger goes in as text
// (textContent, setAttribute), never as HTML: records carry visitors' user
// agents and page URLs.

export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id)
  if (!el) throw new Error('console: no #' + id)
  return el as T
}

export type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | null | undefined>

function fill(el: Element, attrs: Attrs | null | undefined, children: Child[]) {
  if (attrs) {
    for (const k of Object.keys(attrs)) {
      const v = attrs[k]
      if (v === false || v === null || v === undefined) continue
      el.setAttribute(k, v === true ? '' : String(v))
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.append(typeof c === 'object' ? c : String(c))
  }
}

// h builds an HTML element.
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  fill(el, attrs, children)
  return el
}

// s builds an SVG element.
export function s(tag: string, attrs?: Attrs | null, ...children: Child[]): SVGElement {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag) as SVGElement
  fill(el, attrs, children)
  return el
}

// say shows a message in a status or alert region.
export function say(el: HTMLElement, text: string, kind: '' | 'error' | 'ok' = '') {
  el.textContent = text
  el.className = 'msg' + (kind ? ' ' + kind : '')
}

// table fills a table's head and body.
export function table(t: HTMLTableElement, head: string[], rows: Child[][], cellClass?: (row: number, col: number, v: Child) => string) {
  const thead = t.tHead || t.createTHead()
  const tbody = t.tBodies[0] || t.createTBody()
  thead.replaceChildren(h('tr', null, ...head.map(x => h('th', { scope: 'col' }, x))))
  tbody.replaceChildren(
    ...rows.map((r, i) => h('tr', null, ...r.map((v, j) => h('td', { class: cellClass ? cellClass(i, j, v) || null : null }, v)))),
  )
}

// facts fills a definition list.
export function facts(dl: HTMLElement, items: [string, Child][]) {
  dl.replaceChildren()
  for (const [k, v] of items) dl.append(h('dt', null, k), h('dd', null, v))
}

// dayAfter and friends work on YYYY-MM-DD strings in UTC.
export const isoDay = (d: Date) => d.toISOString().slice(0, 10)
export const addDays = (day: string, n: number) => isoDay(new Date(Date.parse(day + 'T00:00:00Z') + n * 864e5))
export const today = () => isoDay(new Date())

// time shows an RFC 3339 time to the second, in UTC.
export const time = (t: string) => (t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '')
