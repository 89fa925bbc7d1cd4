// The mail queue: the chosen site's confirmation mails, newest first, with
// their state (queued, sent, failed), attempts and the SMTP server's last
// answer.
import { getJSON } from './api'
import { $, say, table, time } from './dom'
import { errorText, sitePath, state } from './state'

interface Mail {
  id: string
  to: string
  kind: string
  state: string
  attempts: number
  last_error: string
  created_at: string
  sent_at: string
  next_attempt_at: string
}

async function load() {
  const msg = $('mail-msg')
  if (!state.site) return say(msg, 'Choose a site.')
  say(msg, 'Loading…')
  try {
    const mails = await getJSON<Mail[]>(sitePath('/mail?limit=200'))
    table($<HTMLTableElement>('mail-table'), ['Queued (UTC)', 'To', 'State', 'Attempts', 'Sent or next try (UTC)', 'Last answer'],
      mails.map(m => [time(m.created_at), m.to, m.state, m.attempts, time(m.sent_at || m.next_attempt_at), m.last_error]))
    const n = (s: string) => mails.filter(m => m.state === s).length
    say(msg, `${mails.length} mails: ${n('sent')} sent, ${n('queued')} queued, ${n('failed')} failed.`)
  } catch (e) {
    say(msg, errorText(e), 'error')
  }
}

export function init() {
  $('mail-reload').addEventListener('click', load)
}

export const show = load
