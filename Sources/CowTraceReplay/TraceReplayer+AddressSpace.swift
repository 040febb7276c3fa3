import CowTraceFormat
import MMUSim

/// Linux x86-64 values of the address-space syscalls' arguments.
enum LinuxMM {
    static let protMask: UInt64 = 0x7            // PROT_READ | PROT_WRITE | PROT_EXEC
    static let mapTypeMask: UInt64 = 0x03        // MAP_SHARED 1, MAP_PRIVATE 2, MAP_SHARED_VALIDATE 3
    static let mapShared: UInt64 = 0x01
    static let mapPrivate: UInt64 = 0x02
    static let mapFixed: UInt64 = 0x10
    static let mapAnonymous: UInt64 = 0x20
    static let mapLocked: UInt64 = 0x2000
    static let mapNoReserve: UInt64 = 0x4000
    static let mapPopulate: UInt64 = 0x8000
    static let mapHugeTLB: UInt64 = 0x40000
    static let mremapMayMove: UInt64 = 1
    static let mremapFixed: UInt64 = 2
    static let mremapDontUnmap: UInt64 = 4

    /// madvise advice the model handles; the rest is ignored.
    enum Advice {
        case model(MMUSim.Advice)
        case populate(write: Bool)
    }
    static func advice(_ value: UInt64) -> Advice? {
        switch value {
        case 4, 24: return .model(.dontNeed)       // MADV_DONTNEED, MADV_DONTNEED_LOCKED
        case 10: return .model(.dontFork)
        case 11: return .model(.doFork)
        case 12: return .model(.mergeable)
        case 13: return .model(.unmergeable)
        case 14: return .model(.hugePage)
        case 15: return .model(.noHugePage)
        case 18: return .model(.wipeOnFork)
        case 19: return .model(.keepOnFork)
        case 22: return .populate(write: false)    // MADV_POPULATE_READ
        case 23: return .populate(write: true)     // MADV_POPULATE_WRITE
        default: return nil
        }
    }
}

extension TraceReplayer {
    func replayAddressSpace(_ r: AddressSpaceRecord) {
        stats.addressSpaceOps += 1
        guard r.result >= 0 else {
            stats.failedSyscalls += 1 // the kernel changed nothing
            return
        }
        guard ensureProcess(r.pid) else { return }
        let arg = { (i: Int) -> UInt64 in i < r.args.count ? r.args[i] : 0 }
        switch r.op {
        case .mmap: replayMmap(r, start: UInt64(r.result), length: arg(1), prot: arg(2), flags: arg(3),
                               fd: Int32(truncatingIfNeeded: arg(4)), offset: arg(5))
        case .munmap: replayMunmap(r.pid, arg(0), arg(1))
        case .mprotect: replayMprotect(r.pid, arg(0), arg(1), arg(2))
        case .brk: replayBrk(r.pid, requested: arg(0), result: UInt64(r.result))
        case .mremap: replayMremap(r.pid, old: arg(0), oldLength: arg(1), newLength: arg(2), flags: arg(3),
                                   result: UInt64(r.result))
        case .madvise: replayMadvise(r.pid, arg(0), arg(1), arg(2))
        }
    }

    static func protection(_ prot: UInt64) -> Protection { Protection(rawValue: UInt32(prot & LinuxMM.protMask)) }

    static func pageAlignUp(_ v: UInt64) -> UInt64 { (v &+ 4095) & ~UInt64(4095) }

    /// [address, address + length rounded up to pages), if it is a page-aligned,
    /// non-empty range of the user address space (the kernel refuses any other).
    static func userRange(_ address: UInt64, _ length: UInt64) -> (start: UInt64, end: UInt64)? {
        guard length > 0, length <= Paging.userAddressLimit, address % 4096 == 0,
              address < Paging.userAddressLimit else { return nil }
        let len = pageAlignUp(length)
        guard len <= Paging.userAddressLimit - address else { return nil }
        return (address, address + len)
    }

    /// mmap at the address the kernel returned (as MAP_FIXED): whatever the
    /// model had there is replaced. A file descriptor becomes a file object per
    /// (pid, fd). MAP_POPULATE and MAP_LOCKED populate the range as the kernel does.
    func replayMmap(_ r: AddressSpaceRecord, start: UInt64, length: UInt64, prot: UInt64, flags: UInt64,
                    fd: Int32, offset: UInt64) {
        let pid = r.pid
        guard let range = TraceReplayer.userRange(start, length) else {
            note("syscall range outside the user address space ignored", "pid \(pid) mmap at \(hex(start))")
            return
        }
        let len = range.end - range.start
        let type = flags & LinuxMM.mapTypeMask
        guard type != 0 else { return }
        let shared = type != LinuxMM.mapPrivate
        let anonymous = flags & LinuxMM.mapAnonymous != 0
        var mapFlags: MapFlags = shared ? .shared : .private
        if anonymous { mapFlags.insert(.anonymous) }
        if flags & LinuxMM.mapNoReserve != 0 { mapFlags.insert(.noReserve) }
        if flags & LinuxMM.mapHugeTLB != 0 { note("MAP_HUGETLB modelled as 4 KiB pages", "pid \(pid) at \(hex(start))") }
        let protection = TraceReplayer.protection(prot)
        let fileOffset = offset & ~UInt64(4095)
        var file: FileID? = nil
        if !anonymous {
            file = fileObject(key: "fd:\(pid):\(fd)", name: "pid \(pid) fd \(fd)", shmem: false, bytes: fileOffset + len)
        }
        dropImplicitPages(pid, start, start + len)
        do {
            try machine.mmap(pid, length: len, protection: protection, flags: mapFlags, file: file,
                             offset: fileOffset, at: start)
        } catch MMError.outOfMemory(let why) {
            // The kernel accepted the charge; the model's view of Committed_AS differs.
            modelError("mmap refused by the model's overcommit (mapped anyway)", "pid \(pid) at \(hex(start)): \(why)")
            do {
                try machine.adoptMapping(pid, start: start, end: start + len, protection: protection, shared: shared,
                                         file: file, pgoff: Int(fileOffset >> 12))
            } catch {
                modelError("mmap could not be replayed", "pid \(pid) at \(hex(start)): \(error)")
                return
            }
        } catch {
            modelError("mmap could not be replayed", "pid \(pid) at \(hex(start)): \(error)")
            return
        }
        if flags & (LinuxMM.mapPopulate | LinuxMM.mapLocked) != 0, !protection.isEmpty {
            // populate_vma_page_range: write faults for private writable mappings, read faults otherwise.
            populate(pid, start, len, write: !shared && protection.contains(.write))
        }
    }

    func populate(_ pid: Int32, _ start: UInt64, _ length: UInt64, write: Bool) {
        _ = try? machine.access(pid, start, length: length, write ? .write : .read)
    }

    func replayMunmap(_ pid: Int32, _ address: UInt64, _ length: UInt64) {
        guard let range = TraceReplayer.userRange(address, length) else { return }
        let len = range.end - range.start
        dropImplicitPages(pid, address, address + len)
        do { try machine.munmap(pid, address, length: len) } catch {
            modelError("munmap could not be replayed", "pid \(pid) at \(hex(address)): \(error)")
        }
    }

    /// mprotect; where the model lacks part of the range (mapped before tracing),
    /// the parts it has are changed.
    func replayMprotect(_ pid: Int32, _ address: UInt64, _ length: UInt64, _ prot: UInt64) {
        guard let (_, end) = TraceReplayer.userRange(address, length) else { return }
        let protection = TraceReplayer.protection(prot)
        do {
            try machine.mprotect(pid, address, length: end - address, protection: protection)
        } catch MMError.outOfMemory(let why) where why.contains("not fully mapped") {
            for vma in machine.vmas(pid) where vma.end > address && vma.start < end {
                let lo = max(vma.start, address), hi = min(vma.end, end)
                do { try machine.mprotect(pid, lo, length: hi - lo, protection: protection) } catch {
                    modelError("mprotect could not be replayed", "pid \(pid) at \(hex(lo)): \(error)")
                }
            }
        } catch {
            modelError("mprotect could not be replayed", "pid \(pid) at \(hex(address)): \(error)")
        }
    }

    /// brk. The first brk of a process whose start_brk the model does not know
    /// (after exec, or adopted) tells it: the break it returns is where the heap starts.
    func replayBrk(_ pid: Int32, requested: UInt64, result: UInt64) {
        guard result < Paging.userAddressLimit else { return }
        if pidState[pid]?.brkKnown != true {
            do { try machine.setBreak(pid, start: result, current: result) } catch {
                modelError("brk could not be replayed", "pid \(pid): \(error)")
                return
            }
            pidState[pid, default: PidState()].brkKnown = true
            return
        }
        do {
            let old = try machine.currentBreak(pid)
            if result > old { dropImplicitPages(pid, TraceReplayer.pageAlignUp(old), TraceReplayer.pageAlignUp(result)) }
            try machine.brk(pid, result)
        } catch {
            modelError("brk could not be replayed", "pid \(pid) to \(hex(result)): \(error)")
        }
    }

    /// mremap: the VMA and its page-table entries move to the address the kernel returned.
    func replayMremap(_ pid: Int32, old: UInt64, oldLength: UInt64, newLength: UInt64, flags: UInt64, result: UInt64) {
        let oldLen = TraceReplayer.pageAlignUp(oldLength), newLen = TraceReplayer.pageAlignUp(newLength)
        guard TraceReplayer.userRange(result, newLength) != nil,
              oldLength == 0 || TraceReplayer.userRange(old, oldLength) != nil else {
            note("syscall range outside the user address space ignored", "pid \(pid) mremap \(hex(old)) → \(hex(result))")
            return
        }
        let before = machine.vma(pid, containing: old)
        do {
            guard oldLen > 0 else { throw MMError.invalidArgument("old_size 0 (a duplicate of a shared mapping)") }
            if result == old && flags & LinuxMM.mremapFixed == 0 {
                try machine.mremap(pid, old, oldLength: oldLen, newLength: newLen)
            } else {
                dropImplicitPages(pid, result, result + newLen)
                try machine.mremap(pid, old, oldLength: oldLen, newLength: newLen, to: result)
            }
            moveImplicitPages(pid, from: old, length: min(oldLen, newLen), to: result)
            if oldLen > newLen { dropImplicitPages(pid, old + newLen, old + oldLen) }
            if flags & LinuxMM.mremapDontUnmap != 0, let before, result != old {
                // MREMAP_DONTUNMAP: the old range stays mapped, empty.
                try machine.mmap(pid, length: oldLen, protection: TraceReplayer.protection(of: before),
                                 flags: [.private, .anonymous], at: old)
            }
        } catch {
            // The model does not have the old mapping (made before tracing): unmap and map anew.
            modelError("mremap modelled as munmap + mmap", "pid \(pid) \(hex(old)) → \(hex(result)): \(error)")
            if oldLen > 0, flags & LinuxMM.mremapDontUnmap == 0 { try? machine.munmap(pid, old, length: oldLen) }
            dropImplicitPages(pid, old, old + oldLen)
            dropImplicitPages(pid, result, result + newLen)
            let protection = before.map(TraceReplayer.protection(of:)) ?? .readWrite
            let shared = before?.isShared ?? false
            _ = try? machine.adoptMapping(pid, start: result, end: result + newLen, protection: protection,
                                          shared: shared, file: before?.file, pgoff: before?.pgoff ?? 0)
        }
    }

    static func protection(of vma: VMArea) -> Protection {
        var p: Protection = []
        if vma.flags.contains(.read) { p.insert(.read) }
        if vma.flags.contains(.write) { p.insert(.write) }
        if vma.flags.contains(.exec) { p.insert(.exec) }
        return p
    }

    func replayMadvise(_ pid: Int32, _ address: UInt64, _ length: UInt64, _ value: UInt64) {
        guard let range = TraceReplayer.userRange(address, length) else { return }
        let len = range.end - range.start
        guard let advice = LinuxMM.advice(value) else {
            stats.ignoredAdvice += 1
            return
        }
        switch advice {
        case .model(let a):
            do { try machine.madvise(pid, address, length: len, a) } catch {
                modelError("madvise could not be replayed", "pid \(pid) \(a.rawValue) at \(hex(address)): \(error)")
            }
        case .populate(let write):
            populate(pid, address, len, write: write)
        }
    }

    // MARK: made-up mappings

    func dropImplicitPages(_ pid: Int32, _ lo: UInt64, _ hi: UInt64) {
        guard let pages = pidState[pid]?.implicitPages, !pages.isEmpty else { return }
        pidState[pid]!.implicitPages = pages.filter { $0 < lo || $0 >= hi }
    }

    func moveImplicitPages(_ pid: Int32, from old: UInt64, length: UInt64, to new: UInt64) {
        guard old != new, let pages = pidState[pid]?.implicitPages, !pages.isEmpty else { return }
        var moved = Set<UInt64>()
        for p in pages {
            if p >= old && p < old + length { moved.insert(p - old + new) } else if p < new || p >= new + length { moved.insert(p) }
        }
        pidState[pid]!.implicitPages = moved
    }
}
