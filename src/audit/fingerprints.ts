// Names and fingerprints of released key material for the audit log. A fingerprint is the
// SHA-256 of a public key where the key has one, so an auditor can match it against what the app
// later shows; a pure secret (the disk key) gets a domain-separated hash, which names it without
// helping anyone who lacks it.
import { createHash, createPublicKey } from 'node:crypto'
import type { BootInfo } from '../attestation/boot-info.js'
import type { P256Key } from '../crypto/p256.js'
import { x25519PublicKey } from '../crypto/x25519.js'
import type { AuditCaller, ReleasedKey } from './audit-log.js'

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

export function secretFingerprint(name: string, secret: Uint8Array): string {
  return createHash('sha256').update(`dstack-kms-audit/${name}\0`).update(secret).digest('hex')
}

export function p256Fingerprint(key: P256Key): string {
  return sha256Hex(key.spkiDer())
}

export function pemPublicKeyFingerprint(privateKeyPem: string): string {
  return sha256Hex(createPublicKey(privateKeyPem).export({ type: 'spki', format: 'der' }))
}

export function x25519Fingerprint(secret: Uint8Array): string {
  return sha256Hex(x25519PublicKey(secret))
}

export function released(name: string, fingerprint: string): ReleasedKey {
  return { name, fingerprint }
}

/** Copies the verified identity of a guest into the audit caller record. */
export function fillCallerFromBootInfo(caller: AuditCaller, info: BootInfo): void {
  caller.appId = info.appId.toString('hex')
  caller.instanceId = info.instanceId.toString('hex')
  caller.deviceId = info.deviceId.toString('hex')
  caller.mrAggregated = info.mrAggregated.toString('hex')
  caller.composeHash = info.composeHash.toString('hex')
  caller.osImageHash = info.osImageHash.toString('hex')
  caller.tcbStatus = info.tcbStatus
}
