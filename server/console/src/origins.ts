// Refused origins: the pages whose writes the server refused because their
// origin is not in the chosen site's origins (GET
// /v1/admin/sites/{site}/rejected-origins), most refused first, so a site
// owner sees "https://www.shop.example was refused 214 times" instead of a
// banner that silently comes back on every page.
//
// The section and its menu entry are made here rather than in index.html,
// so that this view lives in this one file.
import { getJSON } from './api'
import { $, h, say, table, time } from './dom'
import { errorText, onSiteChange, sitePath, state } from './state'

interface Refused {
  site: string
  since: string
  origins: { origin: string; count: number; first_at: string; last_at: string }[]
}

async function load() {
  const msg = $('origins-msg')
  if (!state.site) return say(msg, 'No site yet.')
  say(msg, 'Loading…')
  try {
    const r = await getJSON<Refused>(sitePath('/rejected-origins'))
    table($<HTMLTableElement>('origins-table'), ['Origin', 'Refused', 'First (UTC)', 'Last (UTC)'],
      r.origins.map(o => [o.origin, o.count, time(o.first_at), time(o.last_at)]))
    $('origins-caption').textContent = 'Origins refused for ' + r.site + ' since ' + time(r.since) + ', most refused first'
    say(msg, r.origins.length
      ? r.origins.map(o => `${o.origin} was refused ${o.count} ${o.count == 1 ? 'time' : 'times'}`).slice(0, 3).join('; ') + '.'
      : 'No write was refused since ' + time(r.since) + '.')
  } catch (e) {
    say(msg, errorText(e), 'error')
  }
}

export function init() {
  $('nav').querySelector('ul')!.append(h('li', null, h('a', { href: '#origins' }, 'Refused origins')))
  $('main').append(
    h('section', { id: 'origins', class: 'panel', 'aria-labelledby': 'origins-h', hidden: true },
      h('h1', { id: 'origins-h' }, 'Refused origins'),
      h('p', null, 'Writes from pages whose origin is not in this site\'s origins are refused (403), so their visitors ' +
        'are asked again on every page. Add the origin below to the site\'s origins (or a wildcard such as ' +
        'https://*.shop.example), in Sites. Counts start when the server starts; /metrics has ' +
        'assent_rejected_origins_total for the long run.'),
      h('p', { id: 'origins-msg', class: 'msg', role: 'status' }),
      h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-labelledby': 'origins-caption' },
        h('table', { id: 'origins-table' }, h('caption', { id: 'origins-caption' }, 'Refused origins'), h('thead'), h('tbody')))))
  onSiteChange(() => {
    if (!$('origins').hidden) load()
  })
}

export const show = load
