/// Overcommit accounting (mm/util.c `__vm_enough_memory`, `vm_commit_limit`).
extension Machine {
    /// vm_commit_limit: (RAM − hugetlb) × ratio / 100 + swap, or overcommit_kbytes + swap.
    public var commitLimitPages: Int {
        let c = configuration
        let allowed = c.overcommitKBytes != 0 ? c.overcommitKBytes >> 2 : ramPages * c.overcommitRatio / 100
        return allowed + swapPages
    }

    /// sysctl_admin_reserve_kbytes in pages: by default min(free/32, 8 MiB) at boot.
    public var adminReservePages: Int {
        (configuration.adminReserveKBytes ?? min(ramPages * 4 / 32, 8192)) >> 2
    }

    /// sysctl_user_reserve_kbytes in pages: by default min(free/32, 128 MiB) at boot.
    public var userReservePages: Int {
        (configuration.userReserveKBytes ?? min(ramPages * 4 / 32, 131_072)) >> 2
    }

    /// __vm_enough_memory: charge `pages` to Committed_AS, or refuse (and take the charge back).
    func vmEnoughMemory(_ mm: MM?, pages: Int, capSysAdmin: Bool) -> Bool {
        committedPages += pages
        switch configuration.overcommitMode {
        case .always:
            return true
        case .heuristic:
            if pages > ramPages + swapPages { break }
            return true
        case .never:
            var allowed = commitLimitPages
            if !capSysAdmin { allowed -= adminReservePages }
            if let mm { allowed -= min(mm.totalVM / 32, userReservePages) }
            if committedPages < allowed { return true }
        }
        committedPages -= pages
        return false
    }

    /// vm_unacct_memory.
    func vmUnacctMemory(_ pages: Int) { committedPages -= pages }
}
