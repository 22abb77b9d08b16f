// RTMR0 events 8–10: the ACPI tables QEMU builds for the VM, its RSDP and its BIOS-linker loader
// script. We cannot build QEMU's tables ourselves; like upstream `dstack-mr/src/acpi.rs` we run an
// operator-supplied program (upstream's is `dstack-acpi-tables`, a patched QEMU that dumps
// `etc/acpi/tables` to stdout) with the QEMU arguments of the VM, then derive the RSDP and loader
// exactly as upstream does. Unlike upstream: argv without a shell, a timeout, an output cap.
//
// The command's contract: it is run as `argv[0] argv[1..] <QEMU arguments of qemuArgs()>` with
// `QEMU_ACPI_COMPAT_VER=X.Y.Z` in its environment, writes the raw `etc/acpi/tables` blob to
// stdout and exits 0; anything else (non-zero exit, a timeout, too much output, a blob without
// the DSDT/FACP/APIC/MCFG/WAET/RSDT tables) fails the verification.
import { spawn } from 'node:child_process'
import { ImageError } from './errors.js'

export interface QemuMachine {
  cpuCount: number
  memorySize: number
  firmwarePath: string
  kernelPath: string
  pic: boolean
  /** resolved QEMU version, given to the command as `QEMU_ACPI_COMPAT_VER` */
  version: [number, number, number]
  hugepages: boolean
  numGpus: number
  numNvswitches: number
  numNics: number
  numVerityVolumes: number
  hotplugOff: boolean
  pciHole64Size: bigint
  hostShareMode: string
  swtpm: boolean
}

/** The QEMU arguments of upstream `Machine::create_tables`, in order (root disk verity, smm off). */
export function qemuArgs(m: QemuMachine): string[] {
  if (m.swtpm) throw new ImageError('swtpm measurement is not supported')
  if (m.cpuCount <= 0) throw new ImageError('cpuCount must be greater than 0')
  const mib = Math.floor(m.memorySize / (1024 * 1024))
  const disk = '/bin/sh'
  const a = [
    '-cpu',
    'qemu64',
    '-smp',
    String(m.cpuCount),
    '-m',
    `${mib}M`,
    '-nographic',
    '-nodefaults',
    '-serial',
    'stdio',
    '-bios',
    m.firmwarePath,
    '-kernel',
    m.kernelPath,
    '-initrd',
    disk,
    '-drive',
    `file=${disk},if=none,id=hd1,format=raw,readonly=on`,
    '-device',
    'virtio-blk-pci,drive=hd1',
  ]
  for (let i = 0; i < m.numVerityVolumes; i++) {
    a.push('-drive', `file=${disk},if=none,id=vol${i},format=raw,readonly=on`)
    a.push('-device', `virtio-blk-pci,drive=vol${i}`)
  }
  for (let i = 0; i < m.numNics; i++) {
    a.push('-netdev', `user,id=net${i}`, '-device', `virtio-net-pci,netdev=net${i}`)
  }
  a.push('-object', 'tdx-guest,id=tdx', '-device', 'vhost-vsock-pci,guest-cid=3')
  if (m.hostShareMode === '' || m.hostShareMode === '9p') {
    a.push(
      '-virtfs',
      'local,path=/bin,mount_tag=host-shared,readonly=on,security_model=none,id=virtfs0',
    )
  } else if (m.hostShareMode === 'vvfat' || m.hostShareMode === 'vhd') {
    a.push(
      '-drive',
      `file=${disk},if=none,id=hd2,format=raw,readonly=on`,
      '-device',
      'virtio-blk-pci,drive=hd2',
    )
  } else {
    throw new ImageError(`Invalid shared disk mode: ${m.hostShareMode}`)
  }
  a.push(
    '-drive',
    `file=${disk},if=none,id=hd0,format=raw,readonly=on`,
    '-device',
    'virtio-blk-pci,drive=hd0',
  )
  a.push(
    '-machine',
    `q35,kernel-irqchip=split,confidential-guest-support=tdx,hpet=off,smm=off,pic=${m.pic ? 'on' : 'off'}`,
  )
  if (m.hugepages) {
    a.push('-numa', `node,nodeid=0,cpus=0-${m.cpuCount - 1},memdev=mem0`)
    a.push(
      '-object',
      `memory-backend-file,id=mem0,size=${mib}M,mem-path=/dev/hugepages,share=on,prealloc=no,host-nodes=0,policy=bind`,
    )
  }
  let port = 0
  if (m.numGpus > 0) {
    a.push('-object', 'iommufd,id=iommufd0')
    let bus = 'pcie.0'
    if (m.hugepages) {
      a.push('-device', 'pxb-pcie,id=pcie.node0,bus=pcie.0,addr=10,numa_node=0,bus_nr=5')
      bus = 'pcie.node0'
    }
    for (let i = 0; i < m.numGpus; i++, port++) {
      a.push('-device', `pcie-root-port,id=pci.${port},bus=${bus},chassis=${port}`)
      a.push('-device', `vfio-pci,host=00:00.0,bus=pci.${port},iommufd=iommufd0`)
    }
  }
  // upstream names iommufd0 here even without GPUs; kept as is, it is the fork's contract
  for (let i = 0; i < m.numNvswitches; i++, port++) {
    a.push('-device', `pcie-root-port,id=pci.${port},bus=pcie.0,chassis=${port}`)
    a.push('-device', `vfio-pci,host=00:00.0,bus=pci.${port},iommufd=iommufd0`)
  }
  if (m.hotplugOff) a.push('-global', 'ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off')
  if (m.pciHole64Size > 0n) {
    a.push('-global', `q35-pcihost.pci-hole64-size=0x${m.pciHole64Size.toString(16)}`)
  }
  return a
}

export interface AcpiCommand {
  argv: readonly string[]
  timeoutMs: number
  maxOutputBytes: number
}

const STDERR_KEEP = 4096

/** Runs the table generator; resolves with its stdout, the raw `etc/acpi/tables` blob. */
export function runAcpiCommand(
  cmd: AcpiCommand,
  args: readonly string[],
  compatVersion: string,
): Promise<Buffer> {
  const [file, ...prefix] = cmd.argv
  if (file === undefined) return Promise.reject(new ImageError('acpi_tables_command is empty'))
  return new Promise((resolve, reject) => {
    const child = spawn(file, [...prefix, ...args], {
      shell: false,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, QEMU_ACPI_COMPAT_VER: compatVersion },
    })
    const out: Buffer[] = []
    let outLen = 0
    let err = Buffer.alloc(0)
    let failure: ImageError | null = null
    const stop = (e: ImageError): void => {
      if (failure === null) failure = e
      child.kill('SIGKILL')
    }
    const timer = setTimeout(
      () => stop(new ImageError(`ACPI tables command timed out after ${cmd.timeoutMs} ms`)),
      cmd.timeoutMs,
    )
    child.stdout.on('data', (c: Buffer) => {
      outLen += c.length
      if (outLen > cmd.maxOutputBytes) {
        stop(new ImageError(`ACPI tables command wrote more than ${cmd.maxOutputBytes} bytes`))
      } else out.push(c)
    })
    child.stderr.on('data', (c: Buffer) => {
      if (err.length < STDERR_KEEP) err = Buffer.concat([err, c]).subarray(0, STDERR_KEEP)
    })
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(
        new ImageError(`failed to execute ACPI tables command ${file}: ${e.message}`, { cause: e }),
      )
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (failure !== null) return reject(failure)
      if (code !== 0) {
        const why = signal !== null ? `signal ${signal}` : `exit code ${code}`
        return reject(
          new ImageError(`ACPI tables command failed (${why}): ${err.toString('utf8').trim()}`),
        )
      }
      resolve(Buffer.concat(out))
    })
  })
}

interface TableRef {
  off: number
  csum: number
  len: number
}

/** Finds an ACPI table by signature by walking the headers from offset 0 (`find_acpi_table`). */
export function findAcpiTable(tables: Buffer, sig: string): TableRef {
  let off = 0
  while (off < tables.length) {
    if (off + 8 > tables.length) break
    const len = tables.readUInt32LE(off + 4)
    if (tables.subarray(off, off + 4).toString('latin1') === sig) return { off, csum: off + 9, len }
    if (len === 0) throw new ImageError(`found table with zero length at offset ${off}`)
    off += len
  }
  throw new ImageError(`Table not found: ${sig}`)
}

const FILE_LEN = 56
const fixed = (s: string): Buffer => {
  const b = Buffer.alloc(FILE_LEN)
  b.write(s, 'latin1')
  return b
}
const TABLES = 'etc/acpi/tables'
const RSDP = 'etc/acpi/rsdp'

function allocate(file: string, align: number, zone: number): Buffer {
  const b = Buffer.alloc(128)
  b.writeUInt32LE(1, 0)
  fixed(file).copy(b, 4)
  b.writeUInt32LE(align, 60)
  b[64] = zone
  return b
}
function addPtr(ptrFile: string, pointee: string, offset: number, size: number): Buffer {
  const b = Buffer.alloc(128)
  b.writeUInt32LE(2, 0)
  fixed(ptrFile).copy(b, 4)
  fixed(pointee).copy(b, 60)
  b.writeUInt32LE(offset, 116)
  b[120] = size
  return b
}
function addChecksum(file: string, result: number, start: number, len: number): Buffer {
  const b = Buffer.alloc(128)
  b.writeUInt32LE(3, 0)
  fixed(file).copy(b, 4)
  b.writeUInt32LE(result, 60)
  b.writeUInt32LE(start, 64)
  b.writeUInt32LE(len, 68)
  return b
}

export interface AcpiBlobs {
  tables: Buffer
  rsdp: Buffer
  loader: Buffer
}

/** Builds the RSDP and the 4096-byte loader script for QEMU's tables (`build_tables`). */
export function acpiBlobs(tables: Buffer): AcpiBlobs {
  const dsdt = findAcpiTable(tables, 'DSDT')
  const facp = findAcpiTable(tables, 'FACP')
  const apic = findAcpiTable(tables, 'APIC')
  const mcfg = findAcpiTable(tables, 'MCFG')
  const waet = findAcpiTable(tables, 'WAET')
  const rsdt = findAcpiTable(tables, 'RSDT')
  const rsdp = Buffer.alloc(20)
  rsdp.write('RSD PTR ', 0, 'latin1')
  rsdp.write('BOCHS ', 9, 'latin1')
  rsdp.writeUInt32LE(rsdt.off, 16)
  const csum = (t: TableRef): Buffer => addChecksum(TABLES, t.csum, t.off, t.len)
  const ptr = (offset: number, size: number): Buffer => addPtr(TABLES, TABLES, offset, size)
  const cmds = [
    allocate(RSDP, 16, 2),
    allocate(TABLES, 64, 1),
    csum(dsdt),
    ptr(facp.off + 36, 4),
    ptr(facp.off + 40, 4),
    ptr(facp.off + 140, 8),
    csum(facp),
    csum(apic),
    csum(mcfg),
    csum(waet),
    ptr(rsdt.off + 36, 4),
    ptr(rsdt.off + 40, 4),
    ptr(rsdt.off + 44, 4),
    ptr(rsdt.off + 48, 4),
    csum(rsdt),
    addPtr(RSDP, TABLES, 16, 4),
    addChecksum(RSDP, 8, 0, 20),
  ]
  const loader = Buffer.alloc(4096)
  Buffer.concat(cmds).copy(loader)
  return { tables, rsdp, loader }
}
