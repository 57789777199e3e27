// The phone's side of a holder-bound City Pass credential, in the browser: the holder key and the live code.
//
// The key is made here, by WebCrypto, and is NOT extractable: the page can sign with it but no script can
// read it out (it is kept in IndexedDB as a CryptoKey object). Ed25519 where the browser has it, else ECDSA
// P-256. Both give the 64-byte signatures COSE uses (Ed25519 raw; ECDSA as r || s, WebCrypto's own form),
// which is what the gate verifies (docs/credential-format.md §5):
//
//   presentation     = CBOR [credential (bstr), generated_at (uint), holder_signature (bstr)]
//   holder_signature = sign(CBOR ["Signature1", h'', h'', CBOR [generated_at, SHA-256(credential)]])
//   code text        = "CP1:" + Base45(presentation)
import { encode as cbor } from 'cborg'
import { encode as base45 } from 'base45'

const EMPTY = new Uint8Array(0)
const ALGS = {
  Ed25519: { generate: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
  ES256: { generate: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } }
}

/** A new, non-extractable holder key: {alg, keys, publicRaw}. Ed25519 first, P-256 when the browser lacks it. */
export async function makeHolderKey () {
  for (const alg of ['Ed25519', 'ES256']) {
    try {
      const keys = await crypto.subtle.generateKey(ALGS[alg].generate, false, ['sign', 'verify'])
      const publicRaw = new Uint8Array(await crypto.subtle.exportKey('raw', keys.publicKey))
      return { alg, keys, publicRaw }
    } catch (err) {
      if (alg === 'ES256') throw err
    }
  }
}

/** What a holder signs: a COSE Sig_structure with an empty protected header over ``payload``. */
function sigStructure (payload) {
  return cbor(['Signature1', EMPTY, EMPTY, payload])
}

async function sign (alg, privateKey, message) {
  return new Uint8Array(await crypto.subtle.sign(ALGS[alg].sign, privateKey, message))
}

/** The proof of possession sent with a claim: the holder key signs the claim's id. */
export async function claimProof (alg, privateKey, claimId) {
  return sign(alg, privateKey, sigStructure(cbor(['CP1-wallet-claim', claimId])))
}

/** A fresh dynamic presentation of ``credential`` (the credential's bytes) made at ``generatedAt`` (Unix s). */
export async function present (alg, privateKey, credential, generatedAt) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', credential))
  const signature = await sign(alg, privateKey, sigStructure(cbor([generatedAt, digest])))
  return 'CP1:' + base45(cbor([credential, generatedAt, signature]))
}

export function toBase64Url (bytes) {
  let text = ''
  for (const b of bytes) text += String.fromCharCode(b)
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

export function fromBase64Url (text) {
  const plain = atob(text.replace(/-/g, '+').replace(/_/g, '/'))
  return Uint8Array.from(plain, (c) => c.charCodeAt(0))
}
