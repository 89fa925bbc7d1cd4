// The admin API's shapes the console reads (see API.md).

export interface Purpose {
  id: string
  required?: boolean
  signup?: boolean
  required_for_signup?: boolean
}

export interface Site {
  id: string
  name?: string
  origins: string[]
  modes?: string[]
  purposes: Purpose[]
  policy_version: string
  updated_at?: string
  [k: string]: unknown
}

export interface ConsentRecord {
  id: string
  recorded_at: string
  site: string
  event: string
  source: string
  basis: string
  email: string
  visitor_id: string
  country: string
  regime: string
  notice_version: string
  notice_hash: string
  choices: Record<string, string>
  page_url: string
  erased?: boolean
  tombstone?: boolean
}

export interface AuditEntry {
  at: string
  token: string
  action: string
  detail: string
}

export interface RateCount {
  key: string
  records: number
  granted: number
  denied: number
  rate: number
}

export interface DayCount {
  date: string
  records: number
  grant: number
  deny: number
  partial: number
  withdraw: number
}

export interface Summary {
  records: number
  days: DayCount[]
  purposes: RateCount[]
  countries: RateCount[]
}
