// Script gating: <script type="text/plain" data-assent="analytics"> (inline or
// with src) and <iframe data-assent="marketing" data-src="…"> come alive only
// once their purpose is granted, one after another in document order: an
// inline script that follows an external one waits until that one has loaded.
// data-assent may name several purposes, separated by spaces; all must be granted.
// Until then a gated iframe shows a placeholder that says what it waits for,
// with a button that grants it.
import { nonce } from './api'
import { C, gpcDenied } from './config'
import { D, label, tt } from './decision'
import { h, sheet, theme } from './dom'

let queue = Promise.resolve()

// The placeholder of each waiting iframe.
const held = new Map<Element, HTMLElement>()

const wake = (el: HTMLElement) =>
  new Promise<void>(done => {
    if (el.tagName == 'IFRAME') {
      const p = held.get(el)
      if (p) p.remove(), el.style.removeProperty('display'), held.delete(el)
      ;(el as HTMLIFrameElement).src = el.getAttribute('data-src')!
      return done()
    }
    const s = document.createElement('script')
    Array.from(el.attributes).forEach(a => a.name != 'type' && s.setAttribute(a.name, a.value))
    // Under a strict CSP only a script with the page's nonce runs.
    s.nonce = (el as HTMLScriptElement).nonce || nonce
    // data-type="module" keeps a script's real type.
    if (el.dataset.type) s.type = el.dataset.type
    s.text = (el as HTMLScriptElement).text
    s.onload = s.onerror = () => done()
    el.replaceWith(s)
    if (!s.src) done()
  })

// hold puts a placeholder, in its own shadow root, where the iframe is: the
// iframe's size, the visitor's language, the purposes it waits for and the
// site it comes from, and a button that grants them (unless GPC denies one).
const hold = (f: HTMLElement, need: string[], allow: (ids: string[]) => void) => {
  const ph = h('assent-placeholder', { 'data-assent-placeholder': need.join(' ') }),
    names = need.map(label).join(', '),
    ps = C.purposes.filter(p => need.indexOf(p.id) >= 0),
    say = (k: string) => tt('embed', k).replace('{purpose}', names).replace('{host}', new URL(f.getAttribute('data-src')!, location.href).hostname),
    b = h('button', { type: 'button', class: 'b' }, say('load'))
  ph.style.cssText = 'display:block;max-width:100%;width:' + (f.offsetWidth || 300) + 'px;height:' + (f.offsetHeight || 150) + 'px'
  const r = ph.attachShadow({ mode: 'open' })
  sheet(r)
  b.onclick = () => allow(need)
  r.append(
    h(
      'div',
      { class: 'w ph ' + (theme.scheme || 'auto'), role: 'group', 'aria-label': f.title || say('text') },
      f.title && h('strong', 0, f.title),
      h('p', 0, say('text')),
      ps.some(gpcDenied) ? h('p', 0, tt('gpc')) : b,
    ),
  )
  held.set(f, ph)
  f.style.setProperty('display', 'none', 'important')
  f.before(ph)
}

let watching = 0

// gate wakes every gated element whose purposes are granted, and from its
// first call on watches the page, so elements a single-page app adds later
// are gated the same way. Once the decision (and its texts) is in, an iframe
// still waiting gets its placeholder.
export const gate = (granted: (id: string) => boolean, allow: (ids: string[]) => void): void => {
  watching++ ||
    new MutationObserver(() => gate(granted, allow)).observe(document.documentElement, { childList: true, subtree: true })
  document.querySelectorAll<HTMLElement>('script[type="text/plain"][data-assent],iframe[data-assent][data-src]').forEach(el => {
    if (el.hasAttribute('data-assent-queued')) return
    const need = el.getAttribute('data-assent')!.split(/\s+/)
    if (!need.every(granted)) return D.regime && el.tagName == 'IFRAME' && !held.has(el) && hold(el, need, allow)
    el.setAttribute('data-assent-queued', '')
    queue = queue.then(() => wake(el))
  })
}
