// What every section shares: the sites and the one chosen in the header.
import { getJSON, Who } from './api'
import { $, h } from './dom'
import { Site } from './types'

const SITE_KEY = 'assent-admin-site'

export const state = {
  sites: [] as Site[],
  site: null as Site | null,
  who: null as Who | null,
}

// isAdmin: may this person change things (the server checks it too).
export const isAdmin = () => state.who !== null && state.who.role === 'admin'

const listeners: (() => void)[] = []

// onSiteChange runs fn whenever the chosen site or its config changes.
export const onSiteChange = (fn: () => void) => listeners.push(fn)

// loadSites reads every site and keeps the choice, or takes the first.
export async function loadSites(prefer?: string) {
  state.sites = await getJSON<Site[]>('/v1/admin/sites')
  const want = prefer || (state.site && state.site.id) || sessionStorage.getItem(SITE_KEY) || ''
  const pick = state.sites.filter(s => s.id === want)[0] || state.sites[0] || null
  const sel = $<HTMLSelectElement>('site')
  sel.replaceChildren(...state.sites.map(s => h('option', { value: s.id }, s.name ? s.id + ' — ' + s.name : s.id)))
  if (!state.sites.length) sel.append(h('option', { value: '' }, 'no site yet'))
  choose(pick)
}

export function choose(site: Site | null) {
  state.site = site
  if (site) {
    sessionStorage.setItem(SITE_KEY, site.id)
    $<HTMLSelectElement>('site').value = site.id
  }
  for (const fn of listeners) fn()
}

export const sitePath = (rest = '') => '/v1/admin/sites/' + encodeURIComponent(state.site ? state.site.id : '') + rest

// errorText is what a failed call shows.
export const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))
