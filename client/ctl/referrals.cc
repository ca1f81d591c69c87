// corridorctl refer, inbox, accept, decline, update, permit and outbox: cases between
// organisations.
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "corridor/v1/federation.grpc.pb.h"

namespace corridor::ctl {
namespace {

absl::Status RunRefer(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"to", "agreement", "purpose"}); !st.ok()) return st;
  v1::ReferCaseRequest req;
  req.set_case_id(CaseIdArg(c.args));
  req.set_to_org(c.args.Get("to"));
  req.set_agreement(c.args.Get("agreement"));
  req.set_purpose(c.args.Get("purpose"));
  for (const std::string& inc : c.args.GetAll("include")) {
    for (absl::string_view part : absl::StrSplit(inc, ',', absl::SkipEmpty())) {
      if (part == "personal-data") {
        req.set_include_personal_data(true);
      } else if (absl::StartsWith(part, "E-")) {
        req.add_evidence_ids(std::string(part));
      } else {
        return absl::InvalidArgumentError(
            "--include takes personal-data and/or evidence ids (E-...)");
      }
    }
  }
  req.set_deidentify(c.args.Has("deidentify"));
  if (c.args.Has("onward")) {
    auto o = ParseEnumOption<v1::OnwardSharing>(c.args.Get("onward"), "onward",
                                                v1::OnwardSharing_descriptor());
    if (!o.ok()) return o.status();
    req.set_onward_sharing(*o);
  }
  req.set_retention_until(c.args.Get("retain-until"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ReferCaseResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->Refer(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "referral " << Printable(resp.referral_id()) << " of case " << Printable(req.case_id())
          << " to " << Printable(req.to_org()) << " is queued for delivery (envelope "
          << Printable(resp.envelope_id()) << ")"
          << (resp.deidentified() ? ", without the worker's personal data"
                                  : ", with the worker's personal data (consented)")
          << "\n  follow it with `corridorctl outbox`\n";
  }
  return absl::OkStatus();
}

absl::Status RunInbox(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ListInboxResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->ListInbox(ctx.get(), {}, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"REFERRAL", "FROM", "CASE", "CATEGORY", "CORRIDOR", "PURPOSE", "RECEIVED"}};
  for (const auto& i : resp.items()) {
    rows.push_back({i.referral_id(), i.from_org(), i.case_id(),
                    EnumShort(v1::CaseCategory_descriptor(), i.summary().category()),
                    i.summary().origin_country() + "->" + i.summary().destination_country(),
                    i.purpose(), i.received_at()});
  }
  PrintTable(c.out, rows);
  if (resp.items().empty()) c.out << "(no referrals waiting)\n";
  return absl::OkStatus();
}

absl::Status Decide(Context& c, bool accept) {
  if (c.args.positional().empty()) return absl::InvalidArgumentError("name the referral: REF-...");
  if (!accept) {
    if (auto st = Require(c.args, {"reason"}); !st.ok()) return st;
  }
  v1::DecideReferralRequest req;
  req.set_referral_id(c.args.positional()[0]);
  req.set_accept(accept);
  req.set_reason(c.args.Get("reason"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::DecideReferralResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->Decide(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << (accept ? "accepted " : "declined ") << Printable(req.referral_id()) << "; local case "
          << Printable(resp.case_id()) << "; the decision is on its way back (envelope "
          << Printable(resp.envelope_id()) << ")\n";
  }
  return absl::OkStatus();
}
absl::Status RunAccept(Context& c) { return Decide(c, true); }
absl::Status RunDecline(Context& c) { return Decide(c, false); }

absl::Status RunPostUpdate(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  v1::PostUpdateRequest req;
  req.set_case_id(CaseIdArg(c.args));
  if (c.args.Has("status")) {
    auto st = ParseEnumOption<v1::CaseStatus>(c.args.Get("status"), "status",
                                              v1::CaseStatus_descriptor());
    if (!st.ok()) return st.status();
    req.set_status(*st);
  }
  req.set_outcome(c.args.Get("outcome"));
  req.set_note(c.args.Get("note"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::PostUpdateResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->PostUpdate(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "update recorded on case " << Printable(req.case_id()) << " and sent to "
          << resp.envelope_ids_size() << " linked organisation(s)\n";
  }
  return absl::OkStatus();
}

absl::Status RunPermit(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"referral", "to", "purpose", "agreement"}); !st.ok()) return st;
  v1::PermitRequest req;
  req.set_case_id(CaseIdArg(c.args));
  req.set_referral_id(c.args.Get("referral"));
  req.set_to_org(c.args.Get("to"));
  req.set_purpose(c.args.Get("purpose"));
  req.set_agreement(c.args.Get("agreement"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::PermitResponse resp;
  grpc::Status s = v1::ReferralService::NewStub(conn->channel)->Permit(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "signed permission to pass case " << Printable(req.case_id()) << " on to "
          << Printable(req.to_org()) << " is on its way to the receiver of "
          << Printable(req.referral_id()) << " (envelope " << Printable(resp.envelope_id())
          << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RunOutbox(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  // Every page, shown as one list.
  v1::ListOutboxResponse resp;
  v1::ListOutboxRequest req;
  req.set_page_size(1000);
  do {
    auto ctx = conn->NewContext();
    v1::ListOutboxResponse page;
    grpc::Status s = v1::ReferralService::NewStub(conn->channel)->ListOutbox(ctx.get(), req, &page);
    if (!s.ok()) return Explain(s, *conn);
    for (auto& e : *page.mutable_entries()) *resp.add_entries() = std::move(e);
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  // Oldest first, whatever its state (the node pages by state).
  std::stable_sort(resp.mutable_entries()->begin(), resp.mutable_entries()->end(),
                   [](const v1::OutboxEntry& a, const v1::OutboxEntry& b) {
                     return a.created_at() < b.created_at();  // RFC 3339 UTC sorts as text
                   });
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"CREATED", "ENVELOPE", "TO", "KIND", "STATE", "ATTEMPTS", "DETAIL"}};
  for (const auto& e : resp.entries()) {
    std::string detail = e.state() == "delivered" ? absl::StrCat("receipt: their ledger entry ",
                                                                 e.receipt_ledger_index())
                                                  : e.last_error();
    if (e.state() == "pending" && !e.next_attempt().empty())
      detail += " (next try " + e.next_attempt() + ")";
    rows.push_back({e.created_at(), e.envelope_id(), e.recipient_org(), e.kind(), e.state(),
                    std::to_string(e.attempts()), detail});
  }
  PrintTable(c.out, rows);
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> ReferralCommands() {
  return {
      {{"refer"},
       "CASE --to ORG --agreement ID --purpose P [--include personal-data,E-...]",
       "refer a case to another organisation",
       With(ConnectionOptions(),
            {{"to", "ORG", "the receiving org"},
             {"agreement", "ID", "the agreement (MoU, MLA treaty) it is shared under"},
             {"purpose", "P", "the purpose, as the agreement names it"},
             {"include", "WHAT", "personal-data and/or evidence ids to share", true},
             {"deidentify", "", "send without personal data if consent does not cover it"},
             {"onward", "RULE",
              "may the receiver pass it on: never (default), with-originator-permission, "
              "within-agreement"},
             {"retain-until", "TIME",
              "RFC 3339; the receiver closes it to reads after (default one year)"}}),
       RunRefer},
      {{"inbox"}, "", "referrals waiting for your decision", ConnectionOptions(), RunInbox},
      {{"accept"},
       "REF",
       "accept a referral (its case becomes one of yours)",
       ConnectionOptions(),
       RunAccept},
      {{"decline"},
       "REF --reason TEXT",
       "decline a referral",
       With(ConnectionOptions(), {{"reason", "TEXT", "why (sent back to the referring org)"}}),
       RunDecline},
      {{"update"},
       "CASE [--status S] [--outcome O] [--note TEXT]",
       "post a status change, outcome or note to a case and every linked organisation",
       With(ConnectionOptions(),
            {{"status", "S", "in-progress, closed, ..."},
             {"outcome", "O", "e.g. fees-refunded, licence-suspended, prosecution-opened"},
             {"note", "TEXT", "what happened"}}),
       RunPostUpdate},
      {{"permit"},
       "CASE --referral REF --to ORG --purpose P --agreement ID",
       "let the receiver of your referral pass the case on to another org (signed permission)",
       With(ConnectionOptions(),
            {{"referral", "REF", "your referral whose receiver may pass it on"},
             {"to", "ORG", "to whom"},
             {"purpose", "P", "for what"},
             {"agreement", "ID", "under which agreement"}}),
       RunPermit},
      {{"outbox"},
       "",
       "messages to other organisations: pending, delivered or failed",
       ConnectionOptions(),
       RunOutbox},
  };
}

}  // namespace corridor::ctl
