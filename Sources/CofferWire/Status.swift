import CofferCore

extension Coffer_V1_Status {
    /// An OK status.
    public static var ok: Coffer_V1_Status {
        var status = Coffer_V1_Status()
        status.code = .ok
        return status
    }

    /// The status a Coffer error is sent as.
    public init(_ error: CofferError) {
        self.init()
        code = Coffer_V1_Code(rawValue: error.code.rawValue) ?? .internal
        message = error.message
    }

    /// The error a non-OK status stands for, or nil for OK.
    public var error: CofferError? {
        guard code != .ok else { return nil }
        let code = CofferError.Code(rawValue: self.code.rawValue) ?? .internal
        return CofferError(code, message.isEmpty ? code.description : message)
    }
}

extension Coffer_V1_Request {
    /// The operation's name as in the service definition, for audit records and errors.
    public var operationName: String {
        switch operation {
        case .getPublicKey: "GetPublicKey"
        case .put: "Put"
        case .overwrite: "Overwrite"
        case .delete: "Delete"
        case .get: "Get"
        case .list: "List"
        case .grant: "Grant"
        case .revoke: "Revoke"
        case .issueToken: "IssueToken"
        case .revokeToken: "RevokeToken"
        case .audit: "Audit"
        case .health: "Health"
        case nil: "Unknown"
        }
    }
}
