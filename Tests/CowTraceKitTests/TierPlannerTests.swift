import CowTraceKit
import XCTest

/// A kernel described by the symbols it exposes.
struct FakeKernel: KernelSymbols {
    var btf: Set<String> = []
    var kallsyms: Set<String> = []
    var hasKprobePMU = true
    func btfHasFunction(_ name: String) -> Bool { btf.contains(name) }
    func kallsymsHas(_ name: String) -> Bool { kallsyms.contains(name) }
}

final class TierPlannerTests: XCTestCase {
    /// Debian 6.1: wp_page_copy is a real function, fentry hooks it directly.
    func testFentryWithWpPageCopyHooksTheCopyItself() throws {
        let kernel = FakeKernel(btf: ["do_wp_page", "wp_page_copy", "do_huge_pmd_wp_page", "do_fault"])
        let plan = try TierPlanner.plan(.fentry, kernel: kernel).get()
        XCTAssertFalse(plan.copyByAlloc)
        XCTAssertEqual(plan.faultPrograms, ["fentry_do_wp_page", "fentry_wp_page_copy", "fentry_do_huge_pmd_wp_page",
                                            "fentry_do_fault", "fexit_do_fault"])
        XCTAssertEqual(plan.allPrograms.suffix(3), ["tp_sched_process_fork", "tp_sched_process_exec", "tp_sched_process_exit"])
    }

    /// 6.18: wp_page_copy is inlined, so the copy is found by its allocation
    /// inside do_wp_page's entry/exit window.
    func testFentryWithoutWpPageCopyFindsCopiesByAllocation() throws {
        let plan = try TierPlanner.plan(.fentry, kernel: FakeKernel(btf: ["do_wp_page", "do_cow_fault", "do_fault"])).get()
        XCTAssertTrue(plan.copyByAlloc)
        XCTAssertEqual(plan.faultPrograms, ["fentry_do_wp_page", "fexit_do_wp_page", "tp_mm_page_alloc", "tp_rss_stat",
                                            "fentry_do_cow_fault", "fexit_do_cow_fault"])
    }

    func testFentryNeedsDoWpPageInBTF() {
        guard case .failure(let reason) = TierPlanner.plan(.fentry, kernel: FakeKernel()) else {
            return XCTFail("fentry must be refused without do_wp_page in BTF")
        }
        XCTAssertTrue(reason.description.contains("do_wp_page"))
    }

    func testKprobeNeedsThePMUAndTheSymbol() throws {
        var kernel = FakeKernel(kallsyms: ["do_wp_page", "wp_page_copy"], hasKprobePMU: false)
        guard case .failure(let noPMU) = TierPlanner.plan(.kprobe, kernel: kernel) else { return XCTFail("no PMU must fail") }
        XCTAssertTrue(noPMU.description.contains("CONFIG_KPROBES"))
        kernel.hasKprobePMU = true
        let plan = try TierPlanner.plan(.kprobe, kernel: kernel).get()
        XCTAssertEqual(plan.faultPrograms, ["kprobe_do_wp_page", "kprobe_wp_page_copy",
                                            "tp_page_fault_user", "tp_page_fault_kernel", "tp_mm_page_alloc", "tp_rss_stat"])
        kernel.kallsyms = ["wp_page_copy"]
        guard case .failure(let noSymbol) = TierPlanner.plan(.kprobe, kernel: kernel) else { return XCTFail("no symbol must fail") }
        XCTAssertTrue(noSymbol.description.contains("kallsyms"))
    }

    func testKprobeWithoutWpPageCopyUsesKretprobeWindow() throws {
        let plan = try TierPlanner.plan(.kprobe, kernel: FakeKernel(kallsyms: ["do_wp_page", "do_fault"])).get()
        XCTAssertTrue(plan.copyByAlloc)
        XCTAssertEqual(plan.faultPrograms, ["kprobe_do_wp_page", "kretprobe_do_wp_page", "tp_mm_page_alloc", "tp_rss_stat",
                                            "kprobe_do_fault", "kretprobe_do_fault"])
    }

    /// do_cow_fault and do_fault both inlined: the private file copy of a
    /// not-present write is found the tracepoint tier's way, added once.
    func testCowFaultInlinedFallsBackToTheFaultAndItsAllocation() throws {
        let plan = try TierPlanner.plan(.kprobe, kernel: FakeKernel(kallsyms: ["do_wp_page"])).get()
        XCTAssertEqual(plan.faultPrograms, ["kprobe_do_wp_page", "kretprobe_do_wp_page", "tp_mm_page_alloc", "tp_rss_stat",
                                            "tp_page_fault_user", "tp_page_fault_kernel"])
    }

    /// The kernel's own writes into user memory (read() into a shared page)
    /// fault in kernel mode: page_fault_kernel, beside the user's faults.
    func testTracepointTierNeedsNoSymbols() throws {
        let plan = try TierPlanner.plan(.tracepoint, kernel: FakeKernel(hasKprobePMU: false)).get()
        XCTAssertEqual(plan.faultPrograms, ["tp_page_fault_user", "tp_page_fault_kernel", "tp_mm_page_alloc", "tp_rss_stat"])
    }

    /// Every program any plan can ask for exists in the embedded object
    /// (opening an object needs no privileges).
    func testEveryPlannedProgramIsInTheEmbeddedObject() throws {
        let inObject = Set(try TierPlanner.embeddedProgramNames())
        let everything = FakeKernel(btf: ["do_wp_page", "wp_page_copy", "do_huge_pmd_wp_page", "do_cow_fault"],
                                    kallsyms: ["do_wp_page", "wp_page_copy", "do_huge_pmd_wp_page", "do_cow_fault"])
        let debian61 = FakeKernel(btf: ["do_wp_page", "wp_page_copy", "do_fault"], kallsyms: ["do_wp_page", "wp_page_copy", "do_fault"])
        let partial = FakeKernel(btf: ["do_wp_page"], kallsyms: ["do_wp_page"])
        for kernel in [everything, debian61, partial] {
            for tier in AttachTier.allCases {
                let plan = try TierPlanner.plan(tier, kernel: kernel).get()
                XCTAssertEqual(Set(plan.allPrograms).subtracting(inObject), [], "\(tier) plan names a program the object lacks")
            }
        }
    }

    func testTracepointTierSaysSharedWritesAreFoldedIntoReuses() {
        XCTAssertTrue(AttachTier.tracepoint.separatedClasses(copyByAlloc: true).contains { $0.contains("shared writes included") })
        XCTAssertTrue(AttachTier.fentry.separatedClasses(copyByAlloc: false).contains("shared-write"))
    }
}
