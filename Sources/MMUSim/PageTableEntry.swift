/// One 64-bit entry of an x86-64 page table, at any of the four levels.
///
/// The layout is the hardware's (arch/x86/include/asm/pgtable_types.h):
///
/// | bit   | name        | meaning here |
/// |-------|-------------|--------------|
/// | 0     | `present`   | the entry maps something; a fault is "not present" without it |
/// | 1     | `write`     | `_PAGE_RW`: writes allowed; CoW clears it at fork |
/// | 2     | `user`      | `_PAGE_USER`: reachable from user mode (always set for user memory) |
/// | 5     | `accessed`  | `_PAGE_ACCESSED`: set by the walker on any access (pte_young) |
/// | 6     | `dirty`     | `_PAGE_DIRTY`: set on a write; smaps counts it as dirty |
/// | 7     | `huge`      | `_PAGE_PSE`: in a PMD, the entry maps a 2 MiB page instead of a table |
/// | 9     | `special`   | `_PAGE_SPECIAL` (software bit 1): no `struct page` behind it, i.e. the zero page; `vm_normal_page` returns nil |
/// | 12…51 | frame       | page frame number, or for an upper-level entry the address of the next table |
/// | 63    | `noExecute` | `_PAGE_NX` |
///
/// Upper-level entries (PGD, PUD, PMD) that point to a table hold that table's
/// address in bits 12…51, like `_PAGE_TABLE` on real hardware: tables are 4 KiB
/// aligned allocations, so the walk chases real pointers.
public struct PageTableEntry: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public static let present: UInt64 = 1 << 0
    public static let write: UInt64 = 1 << 1
    public static let user: UInt64 = 1 << 2
    public static let accessed: UInt64 = 1 << 5
    public static let dirty: UInt64 = 1 << 6
    public static let huge: UInt64 = 1 << 7
    public static let special: UInt64 = 1 << 9
    public static let noExecute: UInt64 = 1 << 63
    /// Bits 12…51: the frame number (or table address).
    public static let frameMask: UInt64 = 0x000F_FFFF_FFFF_F000

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    @inlinable public init(frame: Int, flags: UInt64) {
        rawValue = (UInt64(frame) << 12) | flags
    }

    @inlinable public var isNone: Bool { rawValue == 0 }
    @inlinable public var isPresent: Bool { rawValue & Self.present != 0 }
    @inlinable public var isWritable: Bool { rawValue & Self.write != 0 }
    @inlinable public var isDirty: Bool { rawValue & Self.dirty != 0 }
    @inlinable public var isYoung: Bool { rawValue & Self.accessed != 0 }
    @inlinable public var isHuge: Bool { rawValue & Self.huge != 0 }
    @inlinable public var isSpecial: Bool { rawValue & Self.special != 0 }
    /// The page frame number this leaf entry maps.
    @inlinable public var frame: Int { Int(truncatingIfNeeded: (rawValue & Self.frameMask) >> 12) }

    public var description: String {
        if isNone { return "none" }
        var bits: [String] = []
        if isPresent { bits.append("P") }
        if isWritable { bits.append("W") }
        if rawValue & Self.user != 0 { bits.append("U") }
        if isYoung { bits.append("A") }
        if isDirty { bits.append("D") }
        if isHuge { bits.append("PSE") }
        if isSpecial { bits.append("SPECIAL") }
        return "pfn \(frame) [\(bits.joined(separator: " "))]"
    }
}

/// x86-64 paging constants: 4 levels of 512 entries, 4 KiB pages, 2 MiB PMD leaves.
public enum Paging {
    public static let pageShift = 12
    public static let pageSize: UInt64 = 4096
    public static let entriesPerTable = 512
    public static let pmdShift = 21
    public static let pudShift = 30
    public static let pgdShift = 39
    public static let hugePageSize: UInt64 = 1 << 21
    /// Pages in one 2 MiB huge page (HPAGE_PMD_NR).
    public static let hugePageFrames = 512
    /// Highest user address + 1 with 4-level paging (TASK_SIZE_MAX, 128 TiB).
    public static let userAddressLimit: UInt64 = 1 << 47

    @inlinable public static func pgdIndex(_ a: UInt64) -> Int { Int((a >> 39) & 511) }
    @inlinable public static func pudIndex(_ a: UInt64) -> Int { Int((a >> 30) & 511) }
    @inlinable public static func pmdIndex(_ a: UInt64) -> Int { Int((a >> 21) & 511) }
    @inlinable public static func pteIndex(_ a: UInt64) -> Int { Int((a >> 12) & 511) }
    @inlinable public static func pageAlignDown(_ a: UInt64) -> UInt64 { a & ~(pageSize - 1) }
    @inlinable public static func pageAlignUp(_ a: UInt64) -> UInt64 { (a &+ pageSize &- 1) & ~(pageSize - 1) }
}
