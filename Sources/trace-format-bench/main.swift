// trace-format-bench: write and decode speed of the recording format.
//
//   swift run -c release trace-format-bench [--records N] [--rounds R] [--path FILE]
//
// Writes N (default 5,000,000) realistic records (mostly fault + resolve, some
// fork / exec / exit / address-space / gap / counters, a start-up snapshot of
// process + mapping + page-run records, and an end record) with
// TraceFileWriter, then times decoding, best of R (default 5) rounds:
// streaming (forEachRecord) and into an array (read), from memory and from
// the file (page cache).
//
// Hidden: --write-seeds DIR writes the fuzz seed corpus (small valid files
// plus truncated and bit-flipped variants) and exits.
import CCRC32
import CowTraceFormat
import Foundation

struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: UInt64) -> UInt64 { next() % n }
}

func benchHeader() -> TraceHeader {
    TraceHeader(kernelRelease: "6.18.44-fc-v595", hostname: "bench", attachTiers: ["faults": "tracepoint", "oom": "tracepoint"],
                pageSize: 4096, realtimeOffsetNanoseconds: 1_763_000_000_000_000_000, startTime: 1_000_000_000,
                ramBytes: 24 << 30, swapBytes: 0, overcommitMemory: 0, overcommitRatio: 50, overcommitKBytes: 0,
                transparentHugePages: "madvise", selection: "-c cowtrace-workload --storm 8 --mib 256",
                toolVersion: "bench")
}

/// N records as a CoW storm recording looks: a snapshot of the processes at
/// start, then write-protect faults each followed (mostly) by its resolve,
/// with forks, execs, exits, mmaps, gaps and periodic counters mixed in.
func makeRecords(_ n: Int, seed: UInt64 = 42) -> [TraceRecord] {
    var rng = SplitMix64(state: seed)
    var records: [TraceRecord] = []
    records.reserveCapacity(n)
    var time: UInt64 = 1_000_000_000
    var pids: [Int32] = [1000]
    var nextPid: Int32 = 1001
    let base: UInt64 = 0x7f3a_0000_0000
    records.append(.process(ProcessRecord(time: time, pid: 1000, ppid: 1, uid: 0, comm: "cowtrace-worklo",
                                          startBrk: 0x5555_5600_0000, brk: 0x5555_5602_1000, startStack: 0x7ffd_0000_0000)))
    let maps = [("r--p", "/usr/lib/x86_64-linux-gnu/libc.so.6"), ("r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
                ("rw-p", "[heap]"), ("rw-p", ""), ("rw-p", "[stack]")]
    for (i, (perm, path)) in maps.enumerated() {
        records.append(.mapping(MappingRecord(pid: 1000, start: base + UInt64(i) << 28, end: base + UInt64(i) << 28 + 0x10_0000,
                                              permissions: perm, offset: 0, inode: path.hasPrefix("/") ? 131_077 : 0, path: path)))
        records.append(.pageRun(PageRunRecord(pid: 1000, address: base + UInt64(i) << 28, count: 256,
                                              flags: [.present, .exclusive], frame: 0x12_3400 + UInt64(i) * 256)))
    }
    while records.count < n - 1 {
        time &+= 200 + rng.below(400)
        let pid = pids[Int(rng.below(UInt64(pids.count)))]
        let roll = rng.below(10_000)
        if roll < 9_950 {
            let address = base + rng.below(1 << 16) << 12
            let kind: RecordedFaultKind = roll < 9_400 ? .writeProtect : (roll < 9_700 ? .firstTouchWrite : .firstTouchRead)
            records.append(.fault(FaultRecord(time: time, pid: pid, tid: pid, address: address,
                                              ip: 0x5555_5555_1000 + rng.below(64) * 16, kind: kind, faultClass: .unresolved,
                                              mapping: rng.below(50) == 0 ? .filePrivate : .anonymousPrivate)))
            if kind == .writeProtect && rng.below(10) < 8 && records.count < n - 1 {
                records.append(.resolve(ResolveRecord(time: time + 900, pid: pid, tid: pid, address: address,
                                                      faultClass: rng.below(20) == 0 ? .zeroFill : .copy)))
            }
        } else if roll < 9_965 {
            let child = nextPid
            nextPid += 1
            pids.append(child)
            records.append(.fork(ForkEventRecord(time: time, parent: pid, parentTid: pid, child: child, comm: "cowtrace-worklo")))
        } else if roll < 9_975 {
            if pids.count > 1 {
                let i = 1 + Int(rng.below(UInt64(pids.count - 1)))
                records.append(.exit(ExitEventRecord(time: time, pid: pids[i], tid: pids[i], exitCode: 0)))
                pids.remove(at: i)
            }
        } else if roll < 9_980 {
            records.append(.exec(ExecEventRecord(time: time, pid: pid, tid: pid, comm: "sh")))
        } else if roll < 9_995 {
            let op: AddressSpaceOp = [.mmap, .munmap, .mprotect, .brk, .madvise][Int(rng.below(5))]
            records.append(.addressSpace(AddressSpaceRecord(time: time, pid: pid, tid: pid, op: op,
                                                            args: [base + rng.below(1 << 20) << 12, 1 << 21, 3, 0x22, 0],
                                                            result: Int64(bitPattern: base))))
        } else if roll < 9_997 {
            records.append(.gap(GapRecord(time: time, reason: .ringBufferFull, lost: 1 + rng.below(500))))
        } else {
            records.append(.counters(CountersRecord(time: time, pid: pid, comm: "cowtrace-worklo", wpFaults: rng.below(1 << 20),
                                                    copies: rng.below(1 << 20), zeroFills: 12, fileCopies: 0,
                                                    sharedWrites: 0, thpWPFaults: 0, forks: 8, execs: 0)))
        }
    }
    records.append(.end(EndRecord(time: time + 1, reason: "command exited")))
    return records
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU time of this process (user + system), which other load on the machine inflates less than wall time.
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

struct Timing {
    var wall = Double.infinity
    var cpu = Double.infinity
}

/// Best (lowest) wall and CPU time of `rounds` runs.
func best(_ rounds: Int, _ body: () throws -> Void) rethrows -> Timing {
    var t = Timing()
    for _ in 0..<rounds {
        let w0 = now(), c0 = cpuNow()
        try body()
        t.cpu = min(t.cpu, cpuNow() - c0)
        t.wall = min(t.wall, now() - w0)
    }
    return t
}

func writeSeeds(to dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let h = benchHeader()
    var seeds: [(String, [TraceRecord], Int, Bool)] = []   // name, records, blockBytes, with end
    seeds.append(("minimal", [], 64 << 10, true))
    seeds.append(("header-only", [], 64 << 10, false))
    let oneOfEach: [TraceRecord] = [
        .process(ProcessRecord(time: 1, pid: 10, ppid: 1, uid: 0, comm: "init", startBrk: 1, brk: 2, startStack: 3)),
        .mapping(MappingRecord(pid: 10, start: 0x1000, end: 0x2000, permissions: "rw-p", offset: 0, inode: 0, path: "[heap]")),
        .pageRun(PageRunRecord(pid: 10, address: 0x1000, count: 1, flags: [.present], frame: 99)),
        .fork(ForkEventRecord(time: 2, parent: 10, parentTid: 10, child: 11, comm: "init")),
        .exec(ExecEventRecord(time: 3, pid: 11, tid: 11, comm: "sh")),
        .addressSpace(AddressSpaceRecord(time: 4, pid: 11, tid: 11, op: .mmap, args: [0, 4096, 3, 0x22, 0], result: 0x7000)),
        .fault(FaultRecord(time: 5, pid: 11, tid: 11, address: 0x7000, ip: 0x400000, kind: .writeProtect, faultClass: .unresolved)),
        .resolve(ResolveRecord(time: 6, pid: 11, tid: 11, address: 0x7000, faultClass: .copy)),
        .oomKill(OOMKillRecord(time: 7, victim: 11, comm: "sh", uid: 0, oomScoreAdj: 0, totalVMKB: 1, anonRSSKB: 2,
                               fileRSSKB: 3, shmemRSSKB: 4, pgtablesKB: 5, constraint: "global")),
        .gap(GapRecord(time: 8, reason: .ringBufferFull, lost: 3)),
        .exit(ExitEventRecord(time: 9, pid: 11, tid: 11, exitCode: 9)),
        .counters(CountersRecord(time: 10, pid: 10, comm: "init", wpFaults: 1, copies: 1, zeroFills: 0, fileCopies: 0,
                                 sharedWrites: 0, thpWPFaults: 0, forks: 1, execs: 0)),
    ]
    seeds.append(("one-of-each", oneOfEach, 64 << 10, true))
    seeds.append(("one-of-each-small-blocks", oneOfEach, 96, true))
    seeds.append(("faults", Array(makeRecords(60, seed: 7).dropFirst(11).dropLast()), 256, true))
    seeds.append(("faults-cut", Array(makeRecords(30, seed: 8).dropFirst(11).dropLast()), 200, false))
    var written = 0
    var rng = SplitMix64(state: 1)
    for (name, records, blockBytes, withEnd) in seeds {
        let path = "\(dir)/\(name).ctr"
        try? FileManager.default.removeItem(atPath: path)
        let w = try TraceFileWriter(path: path, header: h, blockBytes: blockBytes)
        for r in records { w.append(r) }
        if withEnd { w.append(.end(EndRecord(time: 99, reason: "command exited"))) }
        try w.close()
        written += 1
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // Truncated variants: in the preamble, in the header block, mid-file, one byte short.
        for (i, cut) in Set([5, 40, bytes.count / 2, bytes.count - 1]).sorted().enumerated() where cut < bytes.count {
            try Data(bytes[0..<cut]).write(to: URL(fileURLWithPath: "\(dir)/\(name).cut\(i).ctr"))
            written += 1
        }
        // Flipped bytes: in the preamble, a block header, a payload.
        for i in 0..<4 {
            var b = bytes
            let at = i == 0 ? 9 : Int(rng.below(UInt64(b.count)))
            b[at] ^= UInt8(1 << rng.below(8))
            try Data(b).write(to: URL(fileURLWithPath: "\(dir)/\(name).flip\(i).ctr"))
            written += 1
        }
    }
    print("wrote \(written) seed files to \(dir)")
}

// MARK: main

var recordCount = 5_000_000
var rounds = 5
var path = FileManager.default.temporaryDirectory.appendingPathComponent("trace-format-bench-\(getpid()).ctr").path
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--records": recordCount = Int(args.popFirst() ?? "") ?? recordCount
    case "--rounds": rounds = max(1, Int(args.popFirst() ?? "") ?? rounds)
    case "--path": path = args.popFirst() ?? path
    case "--write-seeds":
        do { try writeSeeds(to: args.popFirst() ?? "seeds") } catch { print("error: \(error)"); exit(1) }
        exit(0)
    case "-h", "--help":
        print("usage: trace-format-bench [--records N] [--rounds R] [--path FILE]")
        exit(0)
    default:
        print("unknown option \(a); see --help")
        exit(2)
    }
}

#if DEBUG
print("warning: debug build; run with -c release for meaningful figures")
#endif

let records = makeRecords(recordCount)
var faults = 0, resolves = 0
for r in records {
    if case .fault = r { faults += 1 } else if case .resolve = r { resolves += 1 }
}
do {
    try? FileManager.default.removeItem(atPath: path)
    // Write (includes creating the file and the final close; no fsync).
    var writer: TraceFileWriter?
    let writeTime = try best(rounds) {
        try? FileManager.default.removeItem(atPath: path)
        let w = try TraceFileWriter(path: path, header: benchHeader())
        for r in records { w.append(r) }
        try w.close()
        writer = w
    }
    guard let w = writer else { exit(1) }
    let bytes = w.bytesWritten
    let data = try Data(contentsOf: URL(fileURLWithPath: path))

    var streamed = 0
    var sink: UInt64 = 0
    let streamTime = try data.withUnsafeBytes { buffer in
        try best(rounds) {
            streamed = 0
            try TraceFileReader.forEachRecord(bytes: buffer) { r in
                streamed += 1
                if case .fault(let f) = r { sink &+= f.address }
            }
        }
    }
    var arrayCount = 0
    let arrayTime = try data.withUnsafeBytes { buffer in
        try best(rounds) { arrayCount = try TraceFileReader.read(bytes: buffer).records.count }
    }
    let fileStreamTime = try best(rounds) {
        try TraceFileReader.forEachRecord(path: path) { r in if case .fault(let f) = r { sink &+= f.address } }
    }
    let fileArrayTime = try best(rounds) { _ = try TraceFileReader.read(path: path).records.count }
    // The checksum alone over the file's bytes: what every block costs the recorder and the readers.
    var crcs: (UInt32, UInt32) = (0, 0)
    let (crcTime, zlibTime) = try data.withUnsafeBytes { buffer in
        (try best(rounds) { crcs.0 = ccrc32(0, buffer.baseAddress, buffer.count) },
         try best(rounds) { crcs.1 = ccrc32_zlib(0, buffer.baseAddress, buffer.count) })
    }
    guard crcs.0 == crcs.1 else {
        print("error: checksum \(crcs.0) differs from zlib's \(crcs.1)")
        exit(1)
    }
    guard streamed == records.count, arrayCount == records.count else {
        print("error: decoded \(streamed) / \(arrayCount) records, wrote \(records.count)")
        exit(1)
    }

    func f(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }
    let n = Double(records.count)
    func rate(_ t: Timing) -> String {
        "\(f(n / t.wall / 1e6, 2)) M records/s (CPU time: \(f(n / t.cpu / 1e6, 2)))"
    }
    print("records            \(records.count) (\(faults) fault, \(resolves) resolve, \(records.count - faults - resolves) other)")
    print("file               \(bytes) bytes, \(w.blocksWritten) blocks, \(f(Double(bytes) / n, 2)) bytes/record")
    print("write              \(f(Double(bytes) / writeTime.wall / 1e6)) MB/s (CPU time: \(f(Double(bytes) / writeTime.cpu / 1e6))), \(rate(writeTime))")
    print("decode, streaming  \(rate(streamTime)), \(f(Double(bytes) / streamTime.wall / 1e6)) MB/s")
    print("decode, to array   \(rate(arrayTime))")
    print("decode, file       \(rate(fileStreamTime)) streaming")
    print("decode, file       \(rate(fileArrayTime)) to array")
    print("checksum           \(f(Double(bytes) / crcTime.wall / 1e9, 2)) GB/s (\(ccrc32_uses_clmul() == 1 ? "carry-less multiply" : "zlib")), zlib's \(f(Double(bytes) / zlibTime.wall / 1e9, 2)) GB/s")
    print("(best of \(rounds) rounds; decode from memory unless \"file\": read(path:) / forEachRecord(path:) through the page cache)")
    if sink == 42 { print("") }   // keeps the decoded values alive
    try? FileManager.default.removeItem(atPath: path)
} catch {
    try? FileManager.default.removeItem(atPath: path)
    print("error: \(error)")
    exit(1)
}
