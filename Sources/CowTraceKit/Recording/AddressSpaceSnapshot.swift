import CowTraceFormat
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a running process's address space looks like when the recording
/// starts (or when it execs): /proc/PID/stat, maps and, as root, pagemap.
/// The model needs it for pages that were touched before tracing began.
enum AddressSpaceSnapshot {
    /// The process, its mappings and (with `pages`) a run-length summary of
    /// every mapped page's state. Empty when the process is gone.
    static func records(pid: Int32, time: UInt64, pages: Bool) -> [TraceRecord] {
        guard let stat = readPseudoFile("/proc/\(pid)/stat"), let maps = readPseudoFile("/proc/\(pid)/maps") else { return [] }
        var out: [TraceRecord] = []
        out.append(.process(processRecord(pid: pid, time: time, stat: stat)))
        let mappings = MappingRecord.parse(procMaps: maps, pid: pid)
        out += mappings.map(TraceRecord.mapping)
        if pages { out += pageRuns(pid: pid, mappings: mappings).map(TraceRecord.pageRun) }
        return out
    }

    static func processRecord(pid: Int32, time: UInt64, stat: String) -> ProcessRecord {
        var comm = ""
        var fields: [Substring] = []
        if let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") {
            comm = String(stat[stat.index(after: open)..<close])
            fields = stat[stat.index(after: close)...].split(separator: " ")
        }
        // fields[0] is the state (field 3 of proc(5)); field n is fields[n - 3].
        func field(_ n: Int) -> UInt64 { n - 3 < fields.count ? UInt64(fields[n - 3]) ?? 0 : 0 }
        let uid = readPseudoFile("/proc/\(pid)/status")?
            .split(separator: "\n").first { $0.hasPrefix("Uid:") }?
            .split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { UInt32($0) } ?? 0
        return ProcessRecord(time: time, pid: pid, ppid: Int32(truncatingIfNeeded: field(4)), uid: uid, comm: comm,
                             startBrk: field(47), brk: field(48), startStack: field(28))
    }

    /// The shared zero page's frame, learnt by reading a fresh private page of
    /// our own (which maps it) through our own pagemap.
    static let zeroPageFrame: UInt64? = {
        let size = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return nil }
        defer { munmap(p, size) }
        _ = p.load(as: UInt8.self)
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var entry: UInt64 = 0
        let offset = off_t(UInt(bitPattern: p) / UInt(size) * 8)
        guard pread(fd, &entry, 8, offset) == 8, entry & (1 << 63) != 0 else { return nil }
        let frame = entry & ((1 << 55) - 1)
        return frame == 0 ? nil : frame
    }()

    /// Runs of pages with the same state; present pages' frames must also be
    /// consecutive to stay in one run. Needs root for frame numbers (without
    /// it the kernel reports 0 and sharing cannot be seen).
    static func pageRuns(pid: Int32, mappings: [MappingRecord]) -> [PageRunRecord] {
        let fd = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        let zero = zeroPageFrame
        var runs: [PageRunRecord] = []
        var buffer = [UInt64](repeating: 0, count: 4096)
        for m in mappings where m.path != "[vsyscall]" && m.path != "[vvar]" && m.end > m.start {
            var page = m.start >> 12
            let endPage = m.end >> 12
            var current: PageRunRecord?
            while page < endPage {
                let n = Int(min(UInt64(buffer.count), endPage - page))
                let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n * 8, off_t(page * 8)) }
                guard got > 0 else { break }
                for i in 0..<(got / 8) {
                    let entry = buffer[i]
                    var flags: PageRunFlags = []
                    var frame: UInt64 = 0
                    if entry & (1 << 63) != 0 {
                        flags.insert(.present)
                        frame = entry & ((1 << 55) - 1)
                        if frame != 0, frame == zero { flags.insert(.zeroPage) }
                    }
                    if entry & (1 << 62) != 0 { flags.insert(.swapped) }
                    if entry & (1 << 61) != 0 { flags.insert(.fileOrShared) }
                    if entry & (1 << 56) != 0 { flags.insert(.exclusive) }
                    let address = (page + UInt64(i)) << 12
                    if flags.isEmpty { // not present, never swapped: nothing to say
                        if let c = current { runs.append(c); current = nil }
                        continue
                    }
                    let followsFrame: Bool = {
                        guard let c = current else { return false }
                        guard flags.contains(.present), !flags.contains(.zeroPage), c.frame != 0 else { return true }
                        return frame == c.frame + UInt64(c.count)
                    }()
                    if var c = current, c.flags == flags, c.address + UInt64(c.count) * 4096 == address, followsFrame {
                        c.count += 1
                        current = c
                    } else {
                        if let c = current { runs.append(c) }
                        current = PageRunRecord(pid: m.pid, address: address, count: 1, flags: flags, frame: frame)
                    }
                }
                page += UInt64(got / 8)
            }
            if let c = current { runs.append(c) }
        }
        return runs
    }
}
