// The site's configuration, which the server wraps around the bundle as the
// free variable ASSENT_CONFIG (see build/). Absent fields get their defaults here.

export interface Purpose {
  id: string
  required?: boolean
  signup?: boolean
  required_for_signup?: boolean
  consent_mode?: string[]
  cookies?: string[] // first-party cookies deleted when the purpose is refused ("_ga", "_ga_*")
}

export interface WidgetConfig {
  site: string
  policy_version: string
  modes?: string[]
  purposes: Purpose[]
  theme?: { scheme?: string; position?: string; brand?: string; radius?: string }
  settings_button?: boolean
  expiry?: { deny_days?: number; grant_days?: number }
  signup_triggers?: { after_seconds?: number; exit_intent?: boolean; selector?: string; scroll_percent?: number }
  consent_mode?: { wait_for_update?: number; ads_data_redaction?: boolean; url_passthrough?: boolean }
  cookie_domain?: string
  build?: string
}

export type Choices = Record<string, boolean>

declare const ASSENT_CONFIG: WidgetConfig

export const C = ASSENT_CONFIG
const modes = C.modes || ['banner']
export const hasBanner = modes.indexOf('banner') >= 0
export const hasSignup = modes.indexOf('signup') >= 0
export const theme = C.theme || {}

// Banner purposes (cookie categories); the optional ones are the choices.
export const BP = C.purposes.filter(p => !p.signup)
export const OP = BP.filter(p => !p.required)
// The signup form's purposes.
export const SP = C.purposes.filter(p => p.signup)

// Global Privacy Control is an opt-out of sale and sharing: it denies every
// purpose mapped to an ad_* consent type, in every regime (STANDARDS.md).
export const GPC = (navigator as { globalPrivacyControl?: boolean }).globalPrivacyControl === true
export const gpcDenied = (p: Purpose) => GPC && (p.consent_mode || []).some(t => t.indexOf('ad_') == 0)
