// What the wallet keeps on the phone, in IndexedDB: claimed passes with their (non-extractable) holder keys,
// and the key made for a claim whose answer has not arrived yet (so a retry registers the same key).
import { openDB } from 'idb'

const DB = 'citypass-wallet'

function open () {
  return openDB(DB, 1, {
    upgrade (db) {
      db.createObjectStore('passes', { keyPath: 'claimId' })
      db.createObjectStore('pending', { keyPath: 'claimId' })
    }
  })
}

export async function passes () {
  return (await open()).getAll('passes')
}

export async function pass (claimId) {
  return (await open()).get('passes', claimId)
}

export async function savePass (record) {
  const db = await open()
  const tx = db.transaction(['passes', 'pending'], 'readwrite')
  await tx.objectStore('passes').put(record)
  await tx.objectStore('pending').delete(record.claimId)
  await tx.done
}

export async function pending (claimId) {
  return (await open()).get('pending', claimId)
}

export async function savePending (record) {
  await (await open()).put('pending', record)
}

export async function dropPending (claimId) {
  await (await open()).delete('pending', claimId)
}
