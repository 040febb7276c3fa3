import CowTraceFormat
import Foundation

/// Turns user return addresses into function names, from each process's
/// /proc/PID/maps and the ELF symbol tables of the files mapped there.
///
/// Processes often exit before their stacks are read: the maps of every
/// process are cached at first sight (`remember`), and a process without
/// maps of its own borrows its parent's (a forked child maps the same files
/// at the same addresses until it execs).
public final class StackSymbolizer {
    struct Mapping {
        let start: UInt64
        let end: UInt64
        let offset: UInt64
        let path: String
    }

    private var maps: [Int32: [Mapping]] = [:]
    private var tables: [String: ELFSymbolTable?] = [:]

    public init() {}

    /// Caches `pid`'s executable mappings if not cached yet; false when the process is gone.
    @discardableResult
    public func remember(pid: Int32) -> Bool {
        if maps[pid] != nil { return true }
        guard let text = readPseudoFile("/proc/\(pid)/maps") else { return false }
        maps[pid] = StackSymbolizer.executableMappings(text)
        return true
    }

    /// Drops a process's cached mappings (its program changed: exec).
    public func forget(pid: Int32) { maps[pid] = nil }

    /// Gives `child` the parent's cached mappings when it has none of its own.
    public func inherit(child: Int32, from parent: Int32) {
        if maps[child] == nil, !remember(pid: child), let m = maps[parent] { maps[child] = m }
    }

    public func knows(pid: Int32) -> Bool { maps[pid] != nil }

    static func executableMappings(_ text: String) -> [Mapping] {
        MappingRecord.parse(procMaps: text, pid: 0).compactMap { m in
            guard m.permissions.contains("x"), m.path.hasPrefix("/") else { return nil }
            return Mapping(start: m.start, end: m.end, offset: m.offset, path: m.path)
        }
    }

    /// "function" (or "function+0x1f" with offsets), "[unknown] file+0x…" when
    /// the file has no symbol there, "[unknown]" when no mapping covers it.
    public func name(pid: Int32, address: UInt64, withOffset: Bool = false) -> String {
        guard let m = maps[pid]?.first(where: { address >= $0.start && address < $0.end }) else { return "[unknown]" }
        let fileOffset = address - m.start + m.offset
        let table: ELFSymbolTable?
        if let cached = tables[m.path] {
            table = cached
        } else {
            table = ELFSymbolTable(path: m.path)
            tables[m.path] = table
        }
        let file = (m.path as NSString).lastPathComponent
        guard let table, let vaddr = table.virtualAddress(ofFileOffset: fileOffset),
              let (name, offset) = table.symbolize(vaddr) else {
            return "[unknown] \(file)+0x\(String(fileOffset, radix: 16))"
        }
        return withOffset ? "\(name)+0x\(String(offset, radix: 16))" : name
    }

    /// Root-first frames for a stack given innermost first. Return addresses
    /// past the first frame point after the call: look up address − 1 so a
    /// call that ends a function is not blamed on the next one.
    public func frames(pid: Int32, addresses: [UInt64]) -> [String] {
        addresses.enumerated().map { i, a in name(pid: pid, address: i == 0 ? a : a &- 1) }.reversed()
    }
}
