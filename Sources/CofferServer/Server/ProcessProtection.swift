import CCofferShims
import CofferCore

#if canImport(Glibc)
import Glibc
#endif

/// Hardening and limits cofferd applies to itself before it opens the store.
public enum ProcessProtection {
    /// No core dumps, and not dumpable: a crash or a debugger of the same uid cannot read keys or values.
    public static func apply() throws(CofferError) {
        guard coffer_protect_process() == 0 else {
            throw CofferError(.failedPrecondition, "cannot disable core dumps: \(SystemError.current)")
        }
    }

    /// Raises the soft limit on open files to the hard limit, so that the client limits can be met; returns
    /// the limit now in force.
    @discardableResult
    public static func raiseFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }
}

// Glibc imports RLIMIT_NOFILE as an enum case of `__rlimit_resource`.
private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
