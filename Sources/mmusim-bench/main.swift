// mmusim-bench: how fast the simulated MMU handles faults and forks, and how
// much memory it needs per simulated page. Not a test: run it in release mode,
//   swift run -c release mmusim-bench
// and record the figures in BENCHMARKS.md.
import MMUSim
#if canImport(Glibc)
import Glibc
#endif

/// CPU time of this thread: the simulator is single-threaded, and on a shared
/// machine CPU time is steadier than wall time (waiting for a core is not counted).
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// VmRSS of this process in bytes, from /proc/self/statm.
func residentBytes() -> Int {
    guard let f = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(f) }
    var size = 0, resident = 0
    guard withUnsafeMutablePointer(to: &size, { s in
        withUnsafeMutablePointer(to: &resident) { r in fscanf_statm(f, s, r) }
    }) else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func fscanf_statm(_ f: UnsafeMutablePointer<FILE>, _ s: UnsafeMutablePointer<Int>, _ r: UnsafeMutablePointer<Int>) -> Bool {
    var line = [CChar](repeating: 0, count: 256)
    guard fgets(&line, 256, f) != nil else { return false }
    let fields = String(cString: line).split(separator: " ")
    guard fields.count >= 2, let a = Int(fields[0]), let b = Int(fields[1]) else { return false }
    s.pointee = a; r.pointee = b
    return true
}

func fmt(_ v: Double, _ digits: Int = 1) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (v * p).rounded() / p
    return digits == 0 ? String(Int(r)) : String(r)
}

let GiB: UInt64 = 1 << 30
let arguments = CommandLine.arguments
let rounds = arguments.count > 1 ? Int(arguments[1]) ?? 5 : 5
// Usage: mmusim-bench [ROUNDS] [--faults-only]

print("mmusim-bench: simulated MMU, \(rounds) rounds, times are thread CPU time")

// 1. Fault throughput: first touch, zero-page read, CoW copy and reuse faults over 1 GiB each.
// Every round times each kind separately; the median and the best round are printed,
// because other work on the machine slows some rounds down.
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
do {
    let m = Machine(MachineConfiguration(ramBytes: 24 * GiB, overcommitMode: .always, transparentHugePages: .never))
    let p = try m.spawn(comm: "bench")
    let size: UInt64 = 1 * GiB
    var a = try m.mmap(p, length: size, protection: .readWrite, flags: [.private, .anonymous])
    var z = try m.mmap(p, length: size, protection: .readWrite, flags: [.private, .anonymous])
    let kinds: [FaultClass] = [.anonymousPage, .zeroPage, .copy, .reuse]
    var rates: [FaultClass: [Double]] = [:]
    var totalRates: [Double] = []
    func timed(_ cls: FaultClass, _ body: () throws -> AccessResult) rethrows -> (Int, Double) {
        let t0 = now()
        let r = try body()
        let dt = now() - t0
        precondition(r.faults[cls] == r.faults.total && r.faults.total == Int(size >> 12), "unexpected faults \(r.faults)")
        rates[cls, default: []].append(Double(r.faults.total) / dt)
        return (r.faults.total, dt)
    }
    for _ in 0..<rounds {
        var n = 0, dt = 0.0
        func add(_ x: (Int, Double)) { n += x.0; dt += x.1 }
        add(try timed(.anonymousPage) { try m.write(p, a, length: size) })
        add(try timed(.zeroPage) { try m.read(p, z, length: size) })
        let c = try m.fork(p)
        add(try timed(.copy) { try m.write(c, a, length: size) })
        add(try timed(.reuse) { try m.write(p, a, length: size) })
        totalRates.append(Double(n) / dt)
        try m.exit(c)
        try m.munmap(p, a, length: size)
        try m.munmap(p, z, length: size)
        a = try m.mmap(p, length: size, protection: .readWrite, flags: [.private, .anonymous])
        z = try m.mmap(p, length: size, protection: .readWrite, flags: [.private, .anonymous])
    }
    print("fault events per second, one core (\(rounds) rounds x 4 x 262144 faults): median \(fmt(median(totalRates) / 1e6)) M/s, best round \(fmt(totalRates.max()! / 1e6)) M/s")
    for cls in kinds {
        let r = rates[cls]!
        let label = cls.description + String(repeating: " ", count: max(0, 10 - cls.description.count))
        print("  \(label) median \(fmt(median(r) / 1e6)) M/s, best \(fmt(r.max()! / 1e6)) M/s")
    }
}

// 2. fork of a fully populated 10 GiB address space, and memory per simulated page.
if !arguments.contains("--faults-only") {
    let rssBefore = residentBytes()
    let m = Machine(MachineConfiguration(ramBytes: 24 * GiB, overcommitMode: .always, transparentHugePages: .never))
    let p = try m.spawn(comm: "bench10g")
    let size: UInt64 = 10 * GiB
    let a = try m.mmap(p, length: size, protection: .readWrite, flags: [.private, .anonymous])
    let t0 = now()
    let populate = try m.write(p, a, length: size)
    let populateSeconds = now() - t0
    let pages = Int(size >> 12)
    let rssPopulated = residentBytes()
    print("populate 10 GiB: \(populate.faults.total) faults in \(fmt(populateSeconds, 3)) s")
    var times: [Double] = []
    for _ in 0..<rounds {
        let t1 = now()
        let c = try m.fork(p)
        times.append(now() - t1)
        try m.exit(c)
        // The parent's PTEs are now read-only with refcount 1: make them writable again (reuse faults).
        _ = try m.write(p, a, length: size)
    }
    print("fork of 10 GiB (\(pages) pages, \(m.pageTablePages(p)) page-table pages): median \(fmt(median(times) * 1000)) ms, best \(fmt(times.min()! * 1000)) ms, worst \(fmt(times.max()! * 1000)) ms")
    let perPage = Double(rssPopulated - rssBefore) / Double(pages)
    print("memory per simulated page: \(fmt(perPage)) bytes measured (VmRSS growth / pages populated); model: \(Machine.bytesPerFrame) bytes per frame + 8 bytes per PTE")
}
