// The Consent Mode stub, served as /w/SITE/consent-mode.js: a tiny
// synchronous script for the top of <head>, before the Google tag. It puts
// `consent default` (everything denied, with wait_for_update) into the
// dataLayer before any `config` or `event`, whatever the order in which the
// async widget arrives, and for a returning visitor the remembered choice as
// an `update` at once. The widget sees the default there and does not send
// its own. It defines no global besides dataLayer.

// Short keys: every byte of this script delays the page.
interface StubConfig {
  site: string
  version: string // the site's policy_version
  // The Consent Mode types by the purposes mapped to them, space-separated:
  // {"marketing": ["ad_storage", …], "": ["functionality_storage"]}.
  types: Record<string, string[]>
  wait: number // wait_for_update
  set?: string[] // settings sent as gtag('set', name, true): ads_data_redaction, url_passthrough
  days: [number, number] // a refusal's and a consent's expiry
}

// The site's config: the parameter of the function the server wraps the
// bundle in ((function(S){…})({…})), short because every byte counts here.
declare const S: StubConfig
const W = window as any
const layer: unknown[] = (W.dataLayer = W.dataLayer || [])
// gtag's own shape: Google's tag reads arguments objects from the dataLayer.
const gtag: (...a: unknown[]) => void = function () {
  layer.push(arguments)
}
// A type is granted only when every purpose mapped to it is (a type no
// purpose maps, never).
const state = (granted: (purpose: string) => boolean) => {
  const o: Record<string, unknown> = {}
  for (const ps in S.types) S.types[ps].forEach(t => (o[t] = ps && ps.split(' ').every(granted) ? 'granted' : 'denied'))
  return o
}

const defaults = state(() => false)
defaults.wait_for_update = S.wait
gtag('consent', 'default', defaults)
;(S.set || []).forEach(name => gtag('set', name, true))

// The remembered choice, read as the widget reads it (prefs.ts): the cookie
// shared across subdomains (only with cookie_domain), else localStorage.
// Under Global Privacy Control the stub leaves the update to the widget,
// which denies the ad_* types (config.ts).
try {
  if ((navigator as { globalPrivacyControl?: boolean }).globalPrivacyControl) throw 0
  // Site ids are [a-z0-9_-], safe in a pattern.
  const c = document.cookie.match('(^|; )assent_' + S.site + '=([^;]*)')
  // No memory is null here, and reading null.ch throws.
  const m = JSON.parse(c ? decodeURIComponent(c[2]) : localStorage.getItem('assent:' + S.site)!)
  const ch = m.ch
  const any = Object.keys(ch).some(k => ch[k])
  if (m.v == S.version && Date.now() < Date.parse(m.at) + 864e5 * S.days[+any])
    gtag('consent', 'update', state(p => !!ch[p]))
} catch (e) {} // no memory, or storage off: the default stands
