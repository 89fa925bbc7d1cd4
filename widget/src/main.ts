// Assent's widget: asks the server which regime this visitor is in, shows the
// banner or the notice, records each choice, and runs gated scripts and
// Consent Mode by the choice in force. See docs/widget.md.
import { close, cur, keys, show } from './a11y'
import { call } from './api'
import { download, firstLayer, read, receipt, settings } from './banner'
import { C, Choices, gpcDenied, hasBanner, hasSignup, OP } from './config'
import { cmDefault, cmUpdate } from './consentmode'
import { D, decide, optIn, tt } from './decision'
import { box, btn, mount, root } from './dom'
import { gate } from './gating'
import { clearCookies, fresh, M, save } from './prefs'
import { body, signupView, submit } from './signup'

// The view on screen: '' none, b first layer, p settings, r receipt, s signup.
let V = ''
let ready = 0
let pending = 0 // a signup trigger fired while the banner was up
let wanted: string | undefined // assent.open() before the decision arrived

// A purpose runs when it is required, or granted by the choice in force, or,
// with no choice yet, implied by the notice regime; GPC always denies ad_* ones.
const granted = (id: string) =>
  C.purposes.some(p => p.id == id && (!!p.required || (!gpcDenied(p) && (M.ch ? !!M.ch[id] : !!D.regime && !optIn()))))

const now = (v?: boolean) => {
  const o: Choices = {}
  OP.forEach(p => (o[p.id] = v == null ? granted(p.id) : v && !gpcDenied(p)))
  return o
}

const onReady = (f: () => void) =>
  document.readyState == 'loading' ? document.addEventListener('DOMContentLoaded', f) : f()

const apply = (cm = 1) => {
  cm && cmUpdate(p => granted(p.id))
  M.ch && clearCookies(granted)
  onReady(() => gate(granted, allow))
}

const get = () => (M.ch ? { regime: M.rg, choices: Object.assign({}, M.ch), recorded_at: M.at || null, id: M.id || null } : null)

const fire = (n: string) => document.dispatchEvent(new CustomEvent('assent:' + n, { detail: get(), bubbles: true }))

const open = (v?: string) => {
  if (!D.regime) return (wanted = v || 'p')
  if (v == 'signup') hasSignup && ((V = 's'), show(signupView()))
  else if (hasBanner) (V = 'p'), show(settings())
}

// With no dialog open: the banner if there is no choice, a waiting signup, or
// the small persistent "Privacy settings" control.
const idle = () => {
  V = ''
  if (hasBanner && !M.ch) (V = 'b'), show(firstLayer())
  else if (pending) (pending = 0), open('signup')
  else if (hasBanner && C.settings_button !== false) box.append(btn('settings', tt('privacy_settings'), 'ps'))
}

// A choice takes effect at once; the record follows, and is remembered only
// once the server has stored it.
// Writes go one after another, each naming the record it replaces (the one
// in force, or the one the write before it made), so the server can tell a
// withdrawal from a refusal even when the visitor changes their mind quickly.
let writes: Promise<unknown> = Promise.resolve()
const choose = (ch: Choices, source = V == 'b' ? 'banner' : 'preferences') => {
  const had = M.ch,
    id = M.id
  Object.assign(M, { ch, v: D.policy_version || C.policy_version, rg: D.regime, id: '', at: '', rc: '' })
  ;(V == 'b' || V == 'p') && close(idle)
  apply()
  return (writes = writes
    .then(() => call('/consents', body(ch, source, { replaces: had && (M.id || id) })))
    .then(([s, j]) => {
      if (s == 201) Object.assign(M, { id: j.id, at: j.recorded_at, rg: j.regime, rc: j.receipt }), save()
    })
    .catch(() => {})
    .then(() => (fire('change'), get())))
}

const act = (a: string, el: HTMLElement) => {
  if (a == 'accept-all' || a == 'reject-all') choose(now(a == 'accept-all'))
  else if (a == 'save') choose(read(cur as HTMLElement))
  else if (a == 'settings') open()
  else if (a == 'receipt') (V = 'r'), show(receipt(el.dataset))
  else if (a == 'download') download(el.dataset)
  else if (a == 'close') {
    // Closing is never consent: with no choice yet it is "Reject all".
    if (V == 's') (M.su = M.su || 1), save(), close(idle)
    else if (M.ch) close(idle)
    else choose(now(false))
  }
}

// A placeholder's button grants what its embed waits for, as a choice of its own.
const allow = (ids: string[]) => {
  const ch = now()
  OP.forEach(p => ids.indexOf(p.id) >= 0 && (ch[p.id] = !gpcDenied(p)))
  choose(ch, 'embed')
}

const trigger = () => (V == 'b' ? (pending = 1) : V || M.su || open('signup'))

// Consent Mode's default goes out before anything else can run; a remembered
// choice takes effect without waiting for the server.
cmDefault()
const early = fresh(C.policy_version)
if (early) apply()

;(window as any).assent = {
  get,
  open,
  on: (ev: string, fn: (d: unknown) => void) => {
    ev = 'assent:' + ev.replace('assent:', '')
    document.addEventListener(ev, e => fn((e as CustomEvent).detail))
    ev == 'assent:ready' && ready && fn(get())
  },
  withdraw: (id?: string) => choose(id ? Object.assign(now(), { [id]: false }) : now(false), 'preferences'),
}

// No decision, no widget: nothing is shown and nothing gated runs; the next
// page view tries again.
decide().then(
  () =>
    onReady(() => {
      mount()
      root.addEventListener('click', e => {
        const b = (e.target as Element).closest('[data-assent-action]') as HTMLElement
        b && act(b.getAttribute('data-assent-action')!, b)
      })
      root.addEventListener('submit', e => (e.preventDefault(), submit(e.target as HTMLFormElement)))
      keys(() => act('close', box))
      if (!fresh(D.policy_version)) delete M.ch
      // Consent Mode needs an update unless the state is still the default
      // one: opt-in, no choice, and nothing granted early.
      // (Else the remembered choice stands; its embeds get their placeholders now
      // that the texts are in.)
      if (!early || !M.ch) apply(+(early || !!M.ch || !optIn()))
      else gate(granted, allow)
      idle()
      const t = C.signup_triggers || {}
      if (hasSignup) {
        t.after_seconds && setTimeout(trigger, t.after_seconds * 1e3)
        t.exit_intent && document.addEventListener('mouseout', e => e.relatedTarget || e.clientY > 0 || trigger())
        // Scroll depth: the share of the page's scrollable height passed.
        const sc = () => {
          const e = document.documentElement
          if ((100 * scrollY) / Math.max(1, e.scrollHeight - innerHeight) >= t.scroll_percent!) removeEventListener('scroll', sc), trigger()
        }
        t.scroll_percent && addEventListener('scroll', sc, { passive: true })
        t.selector &&
          document.addEventListener('click', e => {
            const el = e.target as Element
            if (el.closest && el.closest(t.selector!)) e.preventDefault(), open('signup')
          })
      }
      ready = 1
      fire('ready')
      wanted && open(wanted)
    }),
  () => {},
)
