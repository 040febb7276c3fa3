/// `vm_flags` of a VMA (include/linux/mm.h), the subset the model uses.
public struct VMFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    // Inlinable computed constants, not stored ones: other modules (the replay
    // tests VM_WRITE at every fault) fold them, where a stored one is read
    // through a call to its addressor.
    @inlinable public static var read: VMFlags { VMFlags(rawValue: 1 << 0) }        // VM_READ
    @inlinable public static var write: VMFlags { VMFlags(rawValue: 1 << 1) }       // VM_WRITE
    @inlinable public static var exec: VMFlags { VMFlags(rawValue: 1 << 2) }        // VM_EXEC
    @inlinable public static var shared: VMFlags { VMFlags(rawValue: 1 << 3) }      // VM_SHARED
    @inlinable public static var mayWrite: VMFlags { VMFlags(rawValue: 1 << 5) }    // VM_MAYWRITE
    @inlinable public static var noReserve: VMFlags { VMFlags(rawValue: 1 << 21) }  // VM_NORESERVE
    /// VM_ACCOUNT: the mapping's pages are charged to Committed_AS.
    @inlinable public static var account: VMFlags { VMFlags(rawValue: 1 << 20) }
    /// VM_DONTCOPY (MADV_DONTFORK): the child does not get this mapping.
    @inlinable public static var dontCopy: VMFlags { VMFlags(rawValue: 1 << 17) }
    /// VM_WIPEONFORK (MADV_WIPEONFORK): the child gets it empty.
    @inlinable public static var wipeOnFork: VMFlags { VMFlags(rawValue: 1 << 24) }
    /// VM_HUGEPAGE (MADV_HUGEPAGE): eligible for THP under "madvise".
    @inlinable public static var hugePage: VMFlags { VMFlags(rawValue: 1 << 29) }
    /// VM_NOHUGEPAGE (MADV_NOHUGEPAGE).
    @inlinable public static var noHugePage: VMFlags { VMFlags(rawValue: 1 << 30) }
    /// VM_MERGEABLE (MADV_MERGEABLE): KSM may merge its pages.
    @inlinable public static var mergeable: VMFlags { VMFlags(rawValue: 1 << 31) }
    /// The model's marker for the heap made by brk.
    @inlinable public static var brkHeap: VMFlags { VMFlags(rawValue: 1 << 12) }
}

/// One virtual memory area (`struct vm_area_struct`): [start, end) with one set of flags.
public struct VMArea: Equatable, Sendable {
    public var start: UInt64
    public var end: UInt64
    public var flags: VMFlags
    /// The backing file (or shmem object for MAP_SHARED|MAP_ANONYMOUS); nil for private anonymous memory.
    public var file: FileID?
    /// File offset of `start`, in pages (vm_pgoff).
    public var pgoff: Int
    /// An anon_vma exists: some anonymous page was ever installed here.
    /// Without it fork does not copy this VMA's page tables (vma_needs_copy).
    public var hasAnonVMA: Bool

    public var pages: Int { Int((end - start) >> 12) }
    public var isShared: Bool { flags.contains(.shared) }
    /// vma_is_anonymous: private anonymous memory, no file behind it.
    public var isAnonymous: Bool { file == nil }
    /// is_cow_mapping: private and may become writable.
    public var isCOWMapping: Bool { !flags.contains(.shared) && flags.contains(.mayWrite) }

    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// File page offset for an address in this VMA (linear_page_index).
    func fileIndex(_ address: UInt64) -> Int { pgoff + Int((address - start) >> 12) }
}

/// A file (or a shmem object) with a page cache.
public struct FileID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public var description: String { "file#\(rawValue)" }
}

/// Memory protection of mmap/mprotect (PROT_*).
public struct Protection: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let read = Protection(rawValue: 1)
    public static let write = Protection(rawValue: 2)
    public static let exec = Protection(rawValue: 4)
    public static let none: Protection = []
    public static let readWrite: Protection = [.read, .write]
}

/// mmap flags the model understands (MAP_*).
public struct MapFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let shared = MapFlags(rawValue: 0x01)
    public static let `private` = MapFlags(rawValue: 0x02)
    public static let fixed = MapFlags(rawValue: 0x10)
    public static let anonymous = MapFlags(rawValue: 0x20)
    public static let noReserve = MapFlags(rawValue: 0x4000)
}

/// madvise advice the model understands.
public enum Advice: String, Sendable, CaseIterable {
    case dontFork = "dontfork", doFork = "dofork"
    case wipeOnFork = "wipeonfork", keepOnFork = "keeponfork"
    case hugePage = "hugepage", noHugePage = "nohugepage"
    case mergeable = "mergeable", unmergeable = "unmergeable"
    case dontNeed = "dontneed"
}
