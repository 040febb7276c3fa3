import ArgumentParser
import CowTraceKit

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Show what this kernel lets cowtrace attach to, and why each tier failed.",
        discussion: """
            Tries every attach tier in order (fentry, kprobe, tracepoint), loads and attaches \
            its programs, and reports the errno and its meaning for each tier that failed, and \
            which fault classes the chosen tier can tell apart.

            Examples:
              sudo cowtrace doctor
              sudo cowtrace doctor --verbose     also print libbpf's log
            """
    )

    @Flag(help: "Print libbpf's messages to stderr.")
    var verbose = false

    func run() throws {
        let facts = KernelFacts.read()
        print("kernel:              \(facts.release)")
        print("BTF:                 \(facts.btfPresent ? "yes (\(KernelFacts.btfPath))" : "MISSING: cowtrace needs CONFIG_DEBUG_INFO_BTF=y")")
        print("privileges:          euid \(facts.euid), \(facts.missingCapabilities.isEmpty ? "CAP_BPF+CAP_PERFMON ok" : "missing \(facts.missingCapabilities.joined(separator: ", "))")")
        print("lockdown:            \(facts.lockdown)")
        print("kprobe PMU:          \(facts.kprobePMU ? "yes" : "no (kernel built without CONFIG_KPROBES)")")
        print("bpffs mounted:       \(facts.bpffsMounted ? "yes" : "no (cowtrace pins nothing, so it does not need it)")")
        print("tracefs mounted:     \(facts.tracefsMounted ? "yes" : "no (cowtrace uses BTF tracepoints, which do not need it)")")
        print("unprivileged BPF:    \(facts.unprivilegedBPFDisabled == "0" ? "allowed" : "disabled (\(facts.unprivilegedBPFDisabled))")")
        print("THP:                 \(facts.transparentHugepages)")
        print("overcommit_memory:   \(facts.overcommitMemory)")
        for function in ["do_wp_page", "wp_page_copy", "do_huge_pmd_wp_page"] {
            let btf = KernelFacts.btfHasFunction(function) ? "in BTF" : "not in BTF"
            let ksym = KernelFacts.kallsymsHas(function) ? "in kallsyms" : "not in kallsyms (inlined or hidden)"
            print("\(function.padding(toLength: 21, withPad: " ", startingAt: 0))\(btf), \(ksym)")
        }
        print("")
        var anyAttached = false
        for tier in AttachTier.allCases {
            var options = TracerOptions()
            options.tier = tier
            options.verbose = verbose
            do {
                let tracer = try CowTracer(options: options)
                let via = tracer.copyByAlloc && tier != .tracepoint ? " (wp_page_copy inlined: copies found by their page allocation)" : ""
                print("tier \(tier.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) OK\(via)")
                print("  separates: \(tier.separatedClasses(copyByAlloc: tracer.copyByAlloc).joined(separator: ", "))")
                print("  programs:  \(tracer.attempts.last?.programs.joined(separator: " ") ?? "")")
                print("  histograms: copies per interval\(tier.seesFaultReturn ? ", copy latency" : " (no copy latency: this tier cannot see a fault return)"), faults by mapping kind\(tier == .tracepoint ? " (a VMA lookup, about 1 µs, per write-protect fault)" : "")")
                tracer.close()
                anyAttached = true
            } catch {
                print("tier \(tier.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) FAILED: \(error)")
            }
        }
        print("")
        if anyAttached {
            print("cowtrace will use the first tier marked OK above.")
        } else {
            throw CLIError(description: "no attach tier works on this kernel: see the reasons above")
        }
    }
}
