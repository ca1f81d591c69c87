// corridorctl case: record, read, list, change, close and erase cases.
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "corridor/v1/case.grpc.pb.h"

namespace corridor::ctl {
namespace {

// Every value is shown through Printable(): a received case holds what a peer sent.
void PrintCase(std::ostream& out, const v1::Case& c) {
  const auto P = [](absl::string_view s) { return Printable(s); };
  out << "case " << P(c.id()) << " (" << EnumShort(v1::CaseStatus_descriptor(), c.status()) << ")\n"
      << "  category:    " << EnumShort(v1::CaseCategory_descriptor(), c.category()) << "\n"
      << "  sector:      " << P(c.sector()) << "\n"
      << "  corridor:    " << P(c.origin_country()) << " -> " << P(c.destination_country()) << "\n"
      << "  worker:      " << P(c.worker().name());
  if (!c.worker().date_of_birth().empty()) out << ", born " << P(c.worker().date_of_birth());
  if (!c.worker().document_number().empty()) {
    out << ", document " << P(c.worker().document_number());
  }
  out << "\n";
  if (!c.worker().contact().empty()) out << "  contact:     " << P(c.worker().contact()) << "\n";
  if (!c.employer().name().empty()) out << "  employer:    " << P(c.employer().name()) << "\n";
  if (!c.recruiter().name().empty()) {
    out << "  recruiter:   " << P(c.recruiter().name());
    if (!c.recruiter().licence_number().empty())
      out << " (licence " << P(c.recruiter().licence_number()) << ")";
    out << "\n";
  }
  if (!c.narrative().empty()) out << "  narrative:   " << P(c.narrative()) << "\n";
  for (const auto& g : c.consent().grants()) {
    out << "  consent:     " << P(g.org()) << " for " << P(absl::StrJoin(g.purposes(), ", "))
        << "\n";
  }
  out << "  owner:       " << P(c.owner_org()) << ", created " << P(c.created_at()) << " by "
      << P(c.created_by()) << ", updated " << P(c.updated_at()) << "\n";
  for (const auto& l : c.referrals()) {
    out << "  referral:    " << P(l.referral_id()) << (l.outgoing() ? " to " : " from ")
        << P(l.peer_org())
        << (l.peer_case_id().empty() ? "" : " (their case " + P(l.peer_case_id()) + ")") << ", "
        << EnumShort(v1::ReferralState_descriptor(), l.state()) << ", " << P(l.purpose())
        << " under " << P(l.agreement()) << (l.reason().empty() ? "" : ": " + P(l.reason()))
        << "\n";
  }
  for (const auto& h : c.history()) {
    out << "  history:     " << P(h.time()) << "  " << P(h.org()) << "  " << P(h.author());
    if (h.status() != v1::CASE_STATUS_UNSPECIFIED)
      out << "  status " << EnumShort(v1::CaseStatus_descriptor(), h.status());
    if (!h.outcome().empty()) out << "  outcome " << P(h.outcome());
    if (!h.note().empty()) out << "  " << P(h.note());
    out << "\n";
  }
}

absl::Status RunCaseCreate(Context& c) {
  if (auto st = Require(c.args, {"category", "origin", "destination", "worker-name"}); !st.ok())
    return st;
  v1::CreateCaseRequest req;
  v1::Case* k = req.mutable_case_();
  auto cat = ParseEnumOption<v1::CaseCategory>(c.args.Get("category"), "category",
                                               v1::CaseCategory_descriptor());
  if (!cat.ok()) return cat.status();
  k->set_category(*cat);
  k->set_sector(c.args.Get("sector"));
  k->set_origin_country(absl::AsciiStrToUpper(c.args.Get("origin")));
  k->set_destination_country(absl::AsciiStrToUpper(c.args.Get("destination")));
  k->mutable_worker()->set_name(c.args.Get("worker-name"));
  k->mutable_worker()->set_date_of_birth(c.args.Get("worker-dob"));
  k->mutable_worker()->set_document_number(c.args.Get("worker-document"));
  k->mutable_worker()->set_contact(c.args.Get("worker-contact"));
  for (absl::string_view l : absl::StrSplit(c.args.Get("languages"), ',', absl::SkipEmpty())) {
    k->mutable_worker()->add_languages(std::string(l));
  }
  k->mutable_employer()->set_name(c.args.Get("employer"));
  k->mutable_recruiter()->set_name(c.args.Get("recruiter"));
  k->mutable_recruiter()->set_licence_number(c.args.Get("recruiter-licence"));
  k->mutable_recruiter()->set_country(c.args.Get("recruiter-country"));
  k->set_narrative(c.args.Get("narrative"));
  for (const std::string& grant : c.args.GetAll("consent")) {
    std::vector<std::string> parts = absl::StrSplit(grant, absl::MaxSplits(':', 1));
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      return absl::InvalidArgumentError(
          "--consent is ORG:PURPOSE[,PURPOSE...], e.g. ministry-id:fee-recovery");
    }
    auto* g = k->mutable_consent()->add_grants();
    g->set_org(parts[0]);
    for (absl::string_view p : absl::StrSplit(parts[1], ',', absl::SkipEmpty()))
      g->add_purposes(std::string(p));
  }
  if (k->consent().grants_size() > 0) {
    k->mutable_consent()->set_method(c.args.Get("consent-method", "recorded by caseworker"));
    k->mutable_consent()->set_given_at(
        absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::Case resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->CreateCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "created case " << Printable(resp.id()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunCaseShow(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"purpose"}); !st.ok()) {
    return absl::InvalidArgumentError(
        "say why you read this worker's data: --purpose (e.g. case-handling)");
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  v1::GetCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  req.set_purpose(c.args.Get("purpose"));
  auto ctx = conn->NewContext();
  v1::Case resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->GetCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    PrintCase(c.out, resp);
  }
  return absl::OkStatus();
}

absl::Status RunCaseList(Context& c) {
  v1::ListCasesRequest req;
  if (c.args.Has("status")) {
    auto st = ParseEnumOption<v1::CaseStatus>(c.args.Get("status"), "status",
                                              v1::CaseStatus_descriptor());
    if (!st.ok()) return st.status();
    req.set_status(*st);
  }
  if (c.args.Has("category")) {
    auto cat = ParseEnumOption<v1::CaseCategory>(c.args.Get("category"), "category",
                                                 v1::CaseCategory_descriptor());
    if (!cat.ok()) return cat.status();
    req.set_category(*cat);
  }
  req.set_sector(c.args.Get("sector"));
  req.set_origin_country(absl::AsciiStrToUpper(c.args.Get("origin")));
  req.set_destination_country(absl::AsciiStrToUpper(c.args.Get("destination")));
  req.set_created_after(c.args.Get("after"));
  req.set_created_before(c.args.Get("before"));
  uint32_t page = 0;
  if (c.args.Has("page-size") && !absl::SimpleAtoi(c.args.Get("page-size"), &page)) {
    return absl::InvalidArgumentError("--page-size must be a number");
  }
  req.set_page_size(page);
  req.set_page_token(c.args.Get("page-token"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ListCasesResponse resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->ListCases(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"CASE", "STATUS", "CATEGORY", "SECTOR", "CORRIDOR", "CREATED"}};
  for (const auto& k : resp.cases()) {
    rows.push_back({k.id(), EnumShort(v1::CaseStatus_descriptor(), k.status()),
                    EnumShort(v1::CaseCategory_descriptor(), k.category()), k.sector(),
                    k.origin_country() + "->" + k.destination_country(), k.created_at()});
  }
  PrintTable(c.out, rows);
  if (!resp.next_page_token().empty()) {
    c.out << "more: --page-token " << Printable(resp.next_page_token()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunCaseUpdate(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  v1::UpdateCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  if (c.args.Has("status")) {
    auto st = ParseEnumOption<v1::CaseStatus>(c.args.Get("status"), "status",
                                              v1::CaseStatus_descriptor());
    if (!st.ok()) return st.status();
    req.set_status(*st);
  }
  req.set_narrative(c.args.Get("narrative"));
  if (c.args.Has("employer")) req.mutable_employer()->set_name(c.args.Get("employer"));
  if (c.args.Has("recruiter")) req.mutable_recruiter()->set_name(c.args.Get("recruiter"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::Case resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->UpdateCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else {
    c.out << "updated case " << Printable(resp.id()) << " ("
          << EnumShort(v1::CaseStatus_descriptor(), resp.status()) << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RunCaseClose(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  v1::CloseCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  req.set_reason(c.args.Get("reason"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::CaseSummary resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->CloseCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  c.json() ? c.out << ToJson(resp) : c.out << "closed case " << Printable(resp.id()) << "\n";
  return absl::OkStatus();
}

absl::Status RunCaseErase(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (auto st = Require(c.args, {"reason"}); !st.ok()) return st;
  v1::EraseCaseRequest req;
  req.set_id(CaseIdArg(c.args));
  req.set_reason(c.args.Get("reason"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::EraseCaseResponse resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->EraseCase(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  c.json() ? c.out << ToJson(resp)
           : c.out << "erased case " << Printable(resp.id())
                   << ": its data key is destroyed; the erasure is ledger entry "
                   << resp.ledger_index() << "\n";
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> CaseCommands() {
  return {
      {{"case", "create"},
       "--category C --origin CC --destination CC --worker-name NAME ...",
       "record a worker's case",
       With(ConnectionOptions(),
            {{"category", "C",
              "recruitment-fees, wage-theft, passport-confiscation, debt-bondage, "
              "forced-labour-indicators, trafficking-indicators, unsafe-work, abuse"},
             {"sector", "S", "e.g. domestic-work, construction, fishing"},
             {"origin", "CC", "the worker's home country (ISO code)"},
             {"destination", "CC", "where the abuse happened (ISO code)"},
             {"worker-name", "NAME", "the worker's name"},
             {"worker-dob", "YYYY-MM-DD", "date of birth"},
             {"worker-document", "NUMBER", "passport or ID number"},
             {"worker-contact", "TEXT", "how to reach the worker"},
             {"languages", "A,B", "languages the worker speaks"},
             {"employer", "NAME", "employer"},
             {"recruiter", "NAME", "recruiter or agency"},
             {"recruiter-licence", "NUMBER", "the recruiter's licence number"},
             {"recruiter-country", "CC", "where the recruiter is licensed"},
             {"narrative", "TEXT", "what happened"},
             {"consent", "ORG:PURPOSES",
              "the worker consents to ORG receiving their data for PURPOSES", true},
             {"consent-method", "TEXT", "how consent was given"}}),
       RunCaseCreate},
      {{"case", "show"},
       "ID --purpose P",
       "show a case, including the worker's personal data",
       With(ConnectionOptions(), {{"purpose", "P", "why you read it (recorded in the ledger)"}}),
       RunCaseShow},
      {{"case", "list"},
       "[filters]",
       "list cases (no personal data)",
       With(ConnectionOptions(), {{"status", "S", "open, in-progress, referred, closed, erased"},
                                  {"category", "C", "case category"},
                                  {"sector", "S", "sector"},
                                  {"origin", "CC", "origin country"},
                                  {"destination", "CC", "destination country"},
                                  {"after", "TIME", "created at or after (RFC 3339)"},
                                  {"before", "TIME", "created before (RFC 3339)"},
                                  {"page-size", "N", "cases per page (default 50)"},
                                  {"page-token", "T", "continue a listing"}}),
       RunCaseList},
      {{"case", "update"},
       "ID [--status S] [--narrative TEXT] ...",
       "change a case",
       With(ConnectionOptions(), {{"status", "S", "open, in-progress, referred, closed"},
                                  {"narrative", "TEXT", "new narrative"},
                                  {"employer", "NAME", "employer"},
                                  {"recruiter", "NAME", "recruiter"}}),
       RunCaseUpdate},
      {{"case", "close"},
       "ID [--reason TEXT]",
       "close a case",
       With(ConnectionOptions(), {{"reason", "TEXT", "why"}}),
       RunCaseClose},
      {{"case", "erase"},
       "ID --reason TEXT",
       "destroy a case's content for good (approvers)",
       With(ConnectionOptions(), {{"reason", "TEXT", "why (recorded in the ledger)"}}),
       RunCaseErase},
  };
}

}  // namespace corridor::ctl
