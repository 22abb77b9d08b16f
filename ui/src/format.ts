// What the wizard derives from the KMS's answers: display forms, the authorisation values and
// certificate fingerprints. No DOM here, so the node tests can check these directly.
import { sha256 } from '@noble/hashes/sha2'
import { bytesToHex } from '@noble/hashes/utils'

/** pRPC JSON carries bytes as bare lower-case hex; operators and contracts expect 0x. */
export function hex0x(hex: string): string {
  return hex === '' ? '' : `0x${hex}`
}

/** What the KMS's Onboard does with a source URL (strip trailing slashes, end in /prpc), done
 * here too so the page never builds `//prpc` from a pasted `https://kms:8000/`. */
export function normaliseSourceUrl(url: string): string {
  const trimmed = url.trim().replace(/\/+$/, '')
  return trimmed.endsWith('/prpc') ? trimmed : `${trimmed}/prpc`
}

export interface KmsIdentity {
  mrAggregated: string
  deviceId: string
  osImageHash: string
}

/** The auth-simple policy entries that admit this KMS (its own self-authorisation and a source
 * or replica's `/bootAuth/kms`), to merge into auth-config.json. */
export function authSimpleSnippet(id: KmsIdentity): string {
  return JSON.stringify(
    {
      osImages: [hex0x(id.osImageHash)],
      kms: { mrAggregated: [hex0x(id.mrAggregated)], devices: [hex0x(id.deviceId)] },
    },
    null,
    2,
  )
}

export interface ContractCall {
  /** the DstackKms function the owner calls, with its Solidity signature */
  signature: string
  /** its single bytes32 argument */
  value: string
}

/** The owner-only DstackKms calls that make `isKmsAllowed` admit this KMS on chain: the
 * aggregated MR, the device and the OS image are each an allow-list entry. */
export function onChainRegistration(id: KmsIdentity): ContractCall[] {
  return [
    { signature: 'addKmsAggregatedMr(bytes32)', value: hex0x(id.mrAggregated) },
    { signature: 'addKmsDevice(bytes32)', value: hex0x(id.deviceId) },
    { signature: 'addOsImageHash(bytes32)', value: hex0x(id.osImageHash) },
  ]
}

/** The DER inside the first PEM block labelled `label`. */
export function pemToDer(pem: string, label = 'CERTIFICATE'): Uint8Array {
  const m = new RegExp(`-----BEGIN ${label}-----([^-]*)-----END ${label}-----`).exec(pem)
  if (m === null) throw new Error(`no ${label} PEM block`)
  const bin = atob((m[1] ?? '').replace(/\s+/g, ''))
  return Uint8Array.from(bin, (c) => c.charCodeAt(0))
}

/** Lower-case hex SHA-256 of a certificate's DER: the form InspectSource reports a source's CA
 * fingerprint in, so the two can be compared by eye. (WebCrypto is unavailable to a page on a
 * plain-HTTP onboarding listener, hence a bundled SHA-256.) */
export function certFingerprint(pem: string): string {
  return bytesToHex(sha256(pemToDer(pem)))
}
