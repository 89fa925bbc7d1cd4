// Google Consent Mode v2. Where the page has gtag or a dataLayer, the widget
// sends `consent default` at once (everything denied, so nothing is stored
// before the decision or a choice) and `consent update` whenever the state in
// force changes. Without gtag it pushes the gtag-style arguments object, which
// is what Google Tag Manager reads from the dataLayer.
import { C, Purpose } from './config'

const W = window as any
const gtag = (): ((...a: unknown[]) => void) | undefined =>
  W.gtag ||
  (W.dataLayer &&
    function () {
      W.dataLayer.push(arguments)
    })

// Every standard type is listed so that one the site maps to no purpose stays
// denied rather than defaulting to granted.
const TYPES = 'ad_storage ad_user_data ad_personalization analytics_storage functionality_storage personalization_storage'.split(' ')

// A type is granted only when every purpose mapped to it is granted.
const state = (ok: (p: Purpose) => boolean) => {
  const o: Record<string, unknown> = {}
  C.purposes.forEach(p => (p.consent_mode || []).forEach(t => TYPES.indexOf(t) < 0 && TYPES.push(t)))
  TYPES.forEach(t => {
    const ps = C.purposes.filter(p => (p.consent_mode || []).indexOf(t) >= 0)
    o[t] = ps.length && ps.every(ok) ? 'granted' : 'denied'
  })
  return o
}

// The stub (/w/SITE/consent-mode.js) sent the default already when the
// dataLayer holds one.
const stubbed = () => (W.dataLayer || []).some((a: any) => a[0] == 'consent' && a[1] == 'default')

export const cmDefault = () => {
  const g = gtag(),
    cm = C.consent_mode || {}
  if (!g || stubbed()) return
  const o = state(() => false)
  o.wait_for_update = cm.wait_for_update == null ? 500 : cm.wait_for_update
  g('consent', 'default', o)
  cm.ads_data_redaction && g('set', 'ads_data_redaction', true)
  cm.url_passthrough && g('set', 'url_passthrough', true)
}

export const cmUpdate = (ok: (p: Purpose) => boolean) => {
  const g = gtag()
  g && g('consent', 'update', state(ok))
}
