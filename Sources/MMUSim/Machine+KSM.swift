/// Kernel samepage merging (mm/ksm.c), one full ksmd pass at a time.
extension Machine {
    /// Runs one ksmd scan over every MADV_MERGEABLE VMA: anonymous pages with
    /// the same contents are merged into one write-protected KSM page. A later
    /// write to it always copies (cow_ksm). Huge pages are left alone.
    /// Returns the number of page-table entries that now share a KSM page.
    @discardableResult
    public func runKSM() -> Int {
        var stable: [UInt64: Int] = [:]                        // contents → KSM frame
        var unstable: [UInt64: (Int, UnsafeMutablePointer<UInt64>)] = [:] // contents → first page seen, its PTE
        var merged = 0
        for task in tasks where task.alive {
            guard let mm = task.mm else { continue }
            for vma in mm.vmas where vma.flags.contains(.mergeable) {
                mm.pageTable.forEachPMD(start: vma.start, end: vma.end) { pmdAddress, pmd in
                    guard pmd.pointee & PageTableEntry.huge == 0 else { return }
                    let table = PageTable.table(pmd.pointee)
                    let lo = max(vma.start, pmdAddress), hi = min(vma.end, pmdAddress + Paging.hugePageSize)
                    for k in Paging.pteIndex(lo)...Paging.pteIndex(hi - 1) {
                        let slot = table + k
                        let e = slot.pointee
                        guard e & PageTableEntry.present != 0, e & PageTableEntry.special == 0 else { continue }
                        let f = Int((e & PageTableEntry.frameMask) >> 12)
                        guard frames.has(f, .anon), frames.refcount[f] < FrameTable.pinBias else { continue }
                        let value = frames.contents[f]
                        if frames.has(f, .ksm) { stable[value] = stable[value] ?? f; continue }
                        if let k = stable[value] {
                            replacePage(slot, old: f, ksm: k)
                            merged += 1
                        } else if let (first, firstSlot) = unstable[value], first != f {
                            // Promote the first page to a KSM page (write_protect_page + stable_tree_insert).
                            frames.set(first, .ksm)
                            frames.clear(first, .anonExclusive)
                            firstSlot.pointee &= ~(PageTableEntry.write | PageTableEntry.dirty)
                            stable[value] = first
                            unstable[value] = nil
                            counters.pointee.vmstat.ksmPagesShared += 1
                            replacePage(slot, old: f, ksm: first)
                            merged += 2
                        } else if unstable[value] == nil {
                            unstable[value] = (f, slot)
                        }
                    }
                }
            }
        }
        counters.pointee.vmstat.ksmPagesSharing += merged
        return merged
    }

    /// replace_page: point the PTE at the KSM page, write-protected; drop the old page.
    func replacePage(_ slot: UnsafeMutablePointer<UInt64>, old: Int, ksm: Int) {
        let e = slot.pointee
        frames.mapcount[ksm] += 1
        frames.refcount[ksm] += 1
        slot.pointee = (UInt64(ksm) << 12) | (e & ~(PageTableEntry.frameMask | PageTableEntry.write | PageTableEntry.dirty))
        frames.mapcount[old] -= 1
        putPage(old)
    }
}
