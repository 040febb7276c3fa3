@testable import CowTraceReplay
import CowTraceFormat
import MMUSim

let page: UInt64 = 4096
let PROT_R: UInt64 = 1
let PROT_RW: UInt64 = 3
let MAP_SHARED: UInt64 = 0x01
let MAP_PRIVATE: UInt64 = 0x02
let MAP_ANONYMOUS: UInt64 = 0x20
let MAP_POPULATE: UInt64 = 0x8000
let MADV_HUGEPAGE: UInt64 = 14
let MREMAP_MAYMOVE: UInt64 = 1
let MREMAP_FIXED: UInt64 = 2

/// Builds record sequences the way the kernel side records them: fault
/// records, then the resolves the tier emits for the fault's class, with the
/// kernel's counters kept alongside so that `counters` writes exact ones.
struct TraceBuilder {
    var tier: String
    var thp: String
    var pageSize: UInt32 = 4096
    var overcommit: Int32 = 0
    var records: [TraceRecord] = []
    var now: UInt64 = 1_000_000_000
    /// The kernel's counters per pid, as the BPF side counts them.
    var kernel: [Int32: CountersRecord] = [:]
    var comms: [Int32: String] = [:]

    init(tier: String = "tracepoint", thp: String = "madvise") {
        self.tier = tier
        self.thp = thp
    }

    var header: TraceHeader {
        TraceHeader(kernelRelease: "6.18.0", hostname: "test", attachTiers: ["faults": tier, "oom": "tracepoint"],
                    pageSize: pageSize, realtimeOffsetNanoseconds: 0, startTime: 1_000_000_000,
                    ramBytes: 8 << 30, swapBytes: 0, overcommitMemory: overcommit, overcommitRatio: 50,
                    overcommitKBytes: 0, transparentHugePages: thp, selection: "-c test", toolVersion: "test")
    }

    mutating func tick() -> UInt64 {
        now += 1000
        return now
    }

    mutating func counters(of pid: Int32) -> CountersRecord {
        kernel[pid] ?? CountersRecord(time: 0, pid: pid, comm: comms[pid] ?? "?", wpFaults: 0, copies: 0, zeroFills: 0,
                                      fileCopies: 0, sharedWrites: 0, thpWPFaults: 0, forks: 0, execs: 0)
    }

    // MARK: processes

    mutating func fork(_ parent: Int32, _ child: Int32, comm: String? = nil) {
        let name = comm ?? comms[parent] ?? "p\(parent)"
        comms[child] = name
        records.append(.fork(ForkEventRecord(time: tick(), parent: parent, parentTid: parent, child: child, comm: name)))
        var c = counters(of: parent)
        c.forks += 1
        kernel[parent] = c
        kernel[child] = counters(of: child)
    }

    mutating func exec(_ pid: Int32, comm: String) {
        comms[pid] = comm
        records.append(.exec(ExecEventRecord(time: tick(), pid: pid, tid: pid, comm: comm)))
        var c = counters(of: pid)
        c.execs += 1
        kernel[pid] = c
    }

    mutating func exit(_ pid: Int32) {
        records.append(.exit(ExitEventRecord(time: tick(), pid: pid, tid: pid, exitCode: 0)))
    }

    // MARK: address space

    mutating func syscall(_ pid: Int32, _ op: AddressSpaceOp, _ args: [UInt64], _ result: Int64) {
        records.append(.addressSpace(AddressSpaceRecord(time: tick(), pid: pid, tid: pid, op: op, args: args, result: result)))
    }

    mutating func mmap(_ pid: Int32, at address: UInt64, pages: UInt64, prot: UInt64 = PROT_RW,
                       flags: UInt64 = MAP_PRIVATE | MAP_ANONYMOUS, fd: Int32 = -1) {
        syscall(pid, .mmap, [0, pages * page, prot, flags, UInt64(bitPattern: Int64(fd))], Int64(address))
    }

    mutating func madvise(_ pid: Int32, at address: UInt64, pages: UInt64, _ advice: UInt64) {
        syscall(pid, .madvise, [address, pages * page, advice], 0)
    }

    mutating func brk(_ pid: Int32, _ requested: UInt64, result: UInt64) {
        syscall(pid, .brk, [requested], Int64(result))
    }

    // MARK: faults

    /// First-touch faults (not present), one per page.
    mutating func touch(_ pid: Int32, at address: UInt64, pages: UInt64 = 1, write: Bool) {
        for k in 0..<pages {
            records.append(.fault(CowTraceFormat.FaultRecord(time: tick(), pid: pid, tid: pid, address: address + k * page, ip: 0x401000,
                                              kind: write ? .firstTouchWrite : .firstTouchRead, faultClass: .unresolved)))
        }
    }

    /// Write-protect faults the kernel classes `cls`, one per page, recorded as the tier records them.
    /// `mapping`: the kind of VMA the fault record carries (the first faults of a process).
    mutating func wp(_ pid: Int32, at address: UInt64, pages: UInt64 = 1, _ cls: RecordedFaultClass,
                     mapping: RecordedMappingKind = .unknown) {
        for k in 0..<pages { wpOne(pid, address + k * page, cls, emit: true, mapping: mapping) }
    }

    /// A write-protect fault the kernel counted but whose events were lost (ring buffer full).
    mutating func lostWP(_ pid: Int32, at address: UInt64, _ cls: RecordedFaultClass) {
        wpOne(pid, address, cls, emit: false)
    }

    mutating func wpOne(_ pid: Int32, _ address: UInt64, _ cls: RecordedFaultClass, emit: Bool,
                        mapping: RecordedMappingKind = .unknown) {
        let fentry = tier != "tracepoint"
        let carried: RecordedFaultClass = fentry && cls == .sharedWrite ? .sharedWrite : .unresolved
        let t = tick()
        if emit {
            records.append(.fault(CowTraceFormat.FaultRecord(time: t, pid: pid, tid: pid, address: address, ip: 0x401000,
                                              kind: .writeProtect, faultClass: carried, mapping: mapping)))
        }
        func resolve(_ c: RecordedFaultClass) {
            if emit {
                records.append(.resolve(ResolveRecord(time: tick(), pid: pid, tid: pid, address: address, faultClass: c)))
            }
        }
        var c = counters(of: pid)
        c.wpFaults += 1
        switch cls {
        case .copy:
            resolve(.copy); c.copies += 1
        case .zeroFill:
            resolve(.zeroFill); c.zeroFills += 1
        case .fileCopy:
            // The tracepoint tier sees the copy's allocation first, then the RSS move that makes it a file copy.
            if !fentry { resolve(.copy) }
            resolve(.fileCopy); c.fileCopies += 1
        case .sharedWrite:
            if fentry { c.sharedWrites += 1 }
        default:
            break
        }
        kernel[pid] = c
    }

    /// Two processes' write-protect faults on the same address at overlapping
    /// times, as two CPUs record them: both enter, then both resolve.
    mutating func wpTogether(_ first: Int32, _ firstClass: RecordedFaultClass, _ second: Int32,
                             _ secondClass: RecordedFaultClass, at address: UInt64) {
        for pid in [first, second] {
            records.append(.fault(CowTraceFormat.FaultRecord(time: tick(), pid: pid, tid: pid, address: address, ip: 0x401000,
                                                             kind: .writeProtect, faultClass: .unresolved)))
        }
        for (pid, cls) in [(first, firstClass), (second, secondClass)] {
            var c = counters(of: pid)
            c.wpFaults += 1
            if cls == .copy {
                records.append(.resolve(ResolveRecord(time: tick(), pid: pid, tid: pid, address: address, faultClass: .copy)))
                c.copies += 1
            }
            kernel[pid] = c
        }
    }

    // MARK: the rest

    mutating func gap(lost: UInt64) {
        records.append(.gap(GapRecord(time: tick(), reason: .ringBufferFull, lost: lost)))
    }

    /// The kernel's exact counters for every pid seen (or for `pids`).
    mutating func writeCounters(_ pids: [Int32]? = nil) {
        for pid in pids ?? kernel.keys.sorted() {
            var c = counters(of: pid)
            c.time = tick()
            c.comm = comms[pid] ?? "?"
            records.append(.counters(c))
        }
    }

    mutating func end() {
        writeCounters()
        records.append(.end(EndRecord(time: tick(), reason: "command exited")))
    }

    func replay() throws -> ReplayResult {
        try TraceReplayer(header: header).replay(records)
    }

    func replayer() throws -> (TraceReplayer, ReplayResult) {
        let r = try TraceReplayer(header: header)
        return (r, r.replay(records))
    }
}

/// `records` with each pair of `run`-record runs swapped: out of order across
/// the blocks and merge chunks the runs are cut into.
func swappingRuns(_ records: [TraceRecord], of run: Int) -> [TraceRecord] {
    let runs = stride(from: 0, to: records.count, by: run).map { Array(records[$0..<min($0 + run, records.count)]) }
    var swapped: [TraceRecord] = []
    for i in stride(from: 0, to: runs.count, by: 2) {
        if i + 1 < runs.count { swapped += runs[i + 1] }
        swapped += runs[i]
    }
    return swapped
}
