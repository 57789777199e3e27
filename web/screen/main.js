// The lane's result screen, opened full-screen by a kiosk browser on the gate: /screen on the gate daemon's
// health address. It listens to /screen/events (server-sent events) and shows what the gate says:
//
//   event "lane"      the lane's standing state: idle, out_of_order or fire (sent on connect and on change)
//   event "decision"  allow / flag / deny, shown for hold_s seconds, then the lane state again
//   event "ping"      every few seconds, so a silent connection is noticed and reopened
//
// Every text arrives already translated (the gate reads its catalogs); the page only lays it out, picks an
// icon and a colour per state, and plays a tone per outcome. When the daemon restarts, the connection drops;
// the page reopens it by itself and, after a few seconds without the gate, says it is not connected.
const EVENTS = '/screen/events'
const SILENCE_MS = 12000 // no event for this long (pings come every few seconds): reconnect
const LOST_MS = 3000 // disconnected this long: show "not connected"
const ICONS = { idle: '', allow: '✓', flag: '!', deny: '✗', out_of_order: '⊘', fire: '⚠', connecting: '…' }
const ARROWS = { down: '↓', up: '↑', left: '←', right: '→' }
const TONES = {
  allow: [[880, 0.12], [1320, 0.18]],
  flag: [[660, 0.15], [0, 0.08], [660, 0.15]],
  deny: [[220, 0.45]],
  out_of_order: [[330, 0.3]],
  fire: [[600, 0.35], [900, 0.35], [600, 0.35], [900, 0.35]]
}

// What tests (and a curious technician, in the console) can read: every event with its timings.
const record = { log: [], tones: [], connects: 0, errors: 0 }
window.__screen = record

let lane = null // the last lane state
let noConnection = { lines: [] } // texts for "not connected", sent by the gate on connect
let holdTimer = null
let source = null
let lastEvent = 0
let lostSince = null
let audio = null

function now () {
  return performance.timeOrigin + performance.now()
}

function render (state) {
  document.body.dataset.kind = state.kind
  const icon = state.kind === 'idle' ? ARROWS[state.arrow] || '' : ICONS[state.kind] || ''
  document.getElementById('icon').textContent = icon
  document.getElementById('arrow').textContent = state.kind === 'fire' ? ARROWS[state.exit_arrow] || '' : ''
  const box = document.getElementById('lines')
  box.replaceChildren(...(state.lines || []).map((line) => {
    const block = document.createElement('div')
    block.className = 'lang'
    block.lang = line.lang
    const title = document.createElement('div')
    title.className = 'title'
    title.textContent = line.title
    block.append(title)
    for (const text of line.details || []) {
      const detail = document.createElement('div')
      detail.className = 'detail'
      detail.textContent = text
      block.append(detail)
    }
    return block
  }))
  document.getElementById('site').textContent = state.site || ''
}

function tone (kind) {
  const notes = TONES[kind]
  if (!notes) return
  record.tones.push({ kind, notes, at: now() })
  try {
    audio = audio || new AudioContext()
    let t = audio.currentTime + 0.01
    for (const [freq, length] of notes) {
      if (freq > 0) {
        const osc = audio.createOscillator()
        const gain = audio.createGain()
        osc.type = kind === 'deny' || kind === 'fire' ? 'square' : 'sine'
        osc.frequency.value = freq
        gain.gain.setValueAtTime(0.25, t)
        gain.gain.exponentialRampToValueAtTime(0.001, t + length)
        osc.connect(gain).connect(audio.destination)
        osc.start(t)
        osc.stop(t + length)
      }
      t += length
    }
  } catch (err) {
    // no audio device: the screen still shows everything
  }
}

function showLane () {
  holdTimer = null
  if (lane) render(lane)
}

function onLane (state, received) {
  const changed = !lane || lane.kind !== state.kind
  lane = state
  if (state.no_connection) noConnection = state.no_connection
  // A decision on screen stays for its hold time, unless the lane turns to an emergency or out of order.
  if (!holdTimer || state.kind !== 'idle') {
    if (holdTimer) clearTimeout(holdTimer)
    holdTimer = null
    render(state)
  }
  if (changed && state.kind !== 'idle') tone(state.kind)
  shown(state, received)
}

function onDecision (state, received) {
  if (lane && lane.kind === 'fire') return
  if (holdTimer) clearTimeout(holdTimer)
  render(state)
  tone(state.kind)
  holdTimer = setTimeout(showLane, (state.hold_s || 4) * 1000)
  shown(state, received)
}

/** Log the event once it is painted: the next animation frame comes after layout and paint. */
function shown (state, received) {
  const entry = { seq: state.seq, kind: state.kind, at: state.at, received, shown: null, text: document.getElementById('screen').innerText }
  record.log.push(entry)
  requestAnimationFrame(() => { entry.shown = now() })
}

function handler (fn) {
  return (event) => {
    const received = now()
    lastEvent = received
    lostSince = null
    fn(JSON.parse(event.data), received)
  }
}

function connect () {
  if (source) source.close()
  source = new EventSource(EVENTS)
  source.addEventListener('open', () => { record.connects += 1 })
  source.addEventListener('lane', handler(onLane))
  source.addEventListener('decision', handler(onDecision))
  source.addEventListener('ping', handler(() => {}))
  source.addEventListener('error', () => {
    record.errors += 1
    lostSince = lostSince || now()
  })
  lastEvent = now()
}

function watch () {
  const t = now()
  if (source && source.readyState === EventSource.CLOSED) {
    connect() // the browser gave up (e.g. a non-event-stream answer while the daemon restarted): try again
  } else if (t - lastEvent > SILENCE_MS) {
    lostSince = lostSince || t
    connect()
  }
  if (lostSince && t - lostSince > LOST_MS && document.body.dataset.kind !== 'out_of_order') {
    render({ kind: 'out_of_order', lines: noConnection.lines, site: lane ? lane.site : '' })
  }
}

render({ kind: 'connecting', lines: [] })
connect()
setInterval(watch, 1000)
