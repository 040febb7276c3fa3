/// vm.overcommit_memory.
public enum OvercommitMode: Int, Sendable, CaseIterable {
    /// 0, OVERCOMMIT_GUESS: refuse only a single request larger than RAM + swap.
    case heuristic = 0
    /// 1, OVERCOMMIT_ALWAYS: never refuse.
    case always = 1
    /// 2, OVERCOMMIT_NEVER: refuse when Committed_AS would reach CommitLimit less the reserves.
    case never = 2
}

/// /sys/kernel/mm/transparent_hugepage/enabled.
public enum THPMode: String, Sendable, CaseIterable {
    case always, madvise, never
}

/// The simulated machine's size and sysctls.
public struct MachineConfiguration: Sendable {
    public var ramBytes: UInt64
    public var swapBytes: UInt64
    public var overcommitMode: OvercommitMode
    /// vm.overcommit_ratio (percent of RAM in CommitLimit), default 50.
    public var overcommitRatio: Int
    /// vm.overcommit_kbytes; when non-zero it replaces the ratio.
    public var overcommitKBytes: Int
    /// vm.admin_reserve_kbytes; nil = the boot default min(free/32, 8 MiB).
    public var adminReserveKBytes: Int?
    /// vm.user_reserve_kbytes; nil = the boot default min(free/32, 128 MiB).
    public var userReserveKBytes: Int?
    public var transparentHugePages: THPMode
    /// transparent_hugepage/use_zero_page.
    public var hugeZeroPage: Bool
    /// Where top-down mmap placement starts (mm->mmap_base).
    public var mmapBase: UInt64
    /// Where brk heaps start (mm->start_brk).
    public var brkBase: UInt64

    public init(ramBytes: UInt64 = 8 << 30, swapBytes: UInt64 = 0,
                overcommitMode: OvercommitMode = .heuristic, overcommitRatio: Int = 50,
                overcommitKBytes: Int = 0, adminReserveKBytes: Int? = nil, userReserveKBytes: Int? = nil,
                transparentHugePages: THPMode = .madvise, hugeZeroPage: Bool = true,
                mmapBase: UInt64 = 0x7f00_0000_0000, brkBase: UInt64 = 0x5555_5600_0000) {
        self.ramBytes = ramBytes
        self.swapBytes = swapBytes
        self.overcommitMode = overcommitMode
        self.overcommitRatio = overcommitRatio
        self.overcommitKBytes = overcommitKBytes
        self.adminReserveKBytes = adminReserveKBytes
        self.userReserveKBytes = userReserveKBytes
        self.transparentHugePages = transparentHugePages
        self.hugeZeroPage = hugeZeroPage
        self.mmapBase = mmapBase
        self.brkBase = brkBase
    }
}
