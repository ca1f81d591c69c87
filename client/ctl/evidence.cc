// corridorctl evidence: upload, list and download a case's documents, digest-checked end to
// end (evidence requests between orgs are in evidence_requests.cc).
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "client/ctl/evidence_transfer.h"
#include "corridor/v1/case.grpc.pb.h"
#include "ledger/crypto/crypto.h"

namespace corridor::ctl {
namespace {

// Progress on stderr for people at a terminal; silent for scripts.
class Progress {
 public:
  Progress(std::ostream& err, std::string verb, uint64_t total)
      : err_(err), verb_(std::move(verb)), total_(total), tty_(isatty(2)) {}
  void Update(uint64_t done) {
    if (!tty_) return;
    char buf[128];
    if (total_ > 0) {
      snprintf(buf, sizeof(buf), "\r%s %.1f / %.1f MiB (%d%%)   ", verb_.c_str(), done / 1048576.0,
               total_ / 1048576.0, static_cast<int>(100.0 * done / total_));
    } else {
      snprintf(buf, sizeof(buf), "\r%s %.1f MiB   ", verb_.c_str(), done / 1048576.0);
    }
    err_ << buf << std::flush;
  }
  void Done() {
    if (tty_) err_ << "\n";
  }

 private:
  std::ostream& err_;
  std::string verb_;
  uint64_t total_;
  bool tty_;
};

absl::Status RunEvidenceAdd(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  if (c.args.positional().size() < 2) {
    return absl::InvalidArgumentError("name the file: corridorctl evidence add CASE FILE");
  }
  const std::string path = c.args.positional()[1];
  auto data = ReadFileToString(path);
  if (!data.ok()) return data.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
  v1::EvidenceItem item;
  auto writer = v1::CaseService::NewStub(conn->channel)->AddEvidence(&ctx, &item);
  v1::AddEvidenceRequest header;
  header.mutable_header()->set_case_id(CaseIdArg(c.args));
  const size_t slash = path.rfind('/');
  header.mutable_header()->set_file_name(
      c.args.Get("name", slash == std::string::npos ? path : path.substr(slash + 1)));
  header.mutable_header()->set_media_type(c.args.Get("media-type", "application/octet-stream"));
  Progress progress(c.err, "uploading", data->size());
  bool open = writer->Write(header);
  constexpr size_t kPiece = 256 * 1024;
  for (size_t off = 0; open && off < data->size(); off += kPiece) {
    v1::AddEvidenceRequest part;
    part.set_data(data->substr(off, kPiece));
    open = writer->Write(part);
    progress.Update(std::min(off + kPiece, data->size()));
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  progress.Done();
  if (!s.ok()) return Explain(s, *conn);
  const std::string local = HexEncode(DigestBytes(Sha256(*data)));
  if (HexEncode(item.sha256()) != local) {
    return absl::DataLossError(
        "the node recorded a different SHA-256 than this file has: upload again");
  }
  if (c.json()) {
    c.out << ToJson(item);
  } else {
    c.out << "added evidence " << Printable(item.id()) << " to case "
          << Printable(CaseIdArg(c.args)) << ": " << Printable(item.file_name()) << ", "
          << item.size() << " bytes, SHA-256 " << local << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunEvidenceList(Context& c) {
  if (auto st = NeedCaseId(c.args); !st.ok()) return st;
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  v1::ListEvidenceRequest req;
  req.set_case_id(CaseIdArg(c.args));
  req.set_purpose(c.args.Get("purpose"));
  auto ctx = conn->NewContext();
  v1::ListEvidenceResponse resp;
  grpc::Status s = v1::CaseService::NewStub(conn->channel)->ListEvidence(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"EVIDENCE", "FILE", "TYPE", "BYTES", "SHA-256", "ADDED"}};
  for (const auto& i : resp.items()) {
    rows.push_back({i.id(), i.file_name(), i.media_type(), std::to_string(i.size()),
                    HexEncode(i.sha256()).substr(0, 16) + "...",
                    i.added_at() + " by " + i.added_by()});
  }
  PrintTable(c.out, rows);
  for (const auto& i : resp.items()) PrintConditions(c.out, i);
  return absl::OkStatus();
}

absl::Status RunEvidenceGet(Context& c) {
  if (c.args.positional().size() < 2) {
    return absl::InvalidArgumentError(
        "corridorctl evidence get CASE EVIDENCE --out FILE --purpose P");
  }
  if (auto st = Require(c.args, {"out", "purpose"}); !st.ok()) return st;
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto got = DownloadEvidence(*conn, c.args.positional()[0], c.args.positional()[1],
                              c.args.Get("purpose"), c.err);
  if (!got.ok()) return got.status();
  if (auto st = WriteFileAtomically(c.args.Get("out"), got->data, 0600); !st.ok()) return st;
  c.out << "saved " << Printable(got->item.file_name()) << " (" << got->item.size()
        << " bytes, SHA-256 verified) to " << Printable(c.args.Get("out")) << "\n";
  PrintConditions(c.out, got->item);
  return absl::OkStatus();
}

}  // namespace

void PrintConditions(std::ostream& out, const v1::EvidenceItem& item) {
  if (item.received_from().empty() && item.conditions_size() == 0) return;
  out << "evidence " << Printable(item.id()) << " was given by " << Printable(item.received_from())
      << " under grant " << Printable(item.grant_id()) << ". Conditions of use:\n";
  for (int i = 0; i < item.conditions_size(); ++i) {
    out << "  " << (i + 1) << ". " << Printable(item.conditions(i)) << "\n";
  }
}

absl::StatusOr<DownloadedEvidence> DownloadEvidence(const Connection& conn,
                                                    const std::string& case_id,
                                                    const std::string& evidence_id,
                                                    const std::string& purpose, std::ostream& err) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
  v1::GetEvidenceRequest req;
  req.set_case_id(case_id);
  req.set_evidence_id(evidence_id);
  req.set_purpose(purpose);
  auto reader = v1::CaseService::NewStub(conn.channel)->GetEvidence(&ctx, req);
  v1::EvidenceChunk chunk;
  DownloadedEvidence got;
  std::unique_ptr<Progress> progress;
  while (reader->Read(&chunk)) {
    if (chunk.has_item()) {
      got.item = chunk.item();
      progress = std::make_unique<Progress>(err, "downloading", got.item.size());
    }
    got.data += chunk.data();
    if (progress) progress->Update(got.data.size());
  }
  grpc::Status s = reader->Finish();
  if (progress) progress->Done();
  if (!s.ok()) return Explain(s, conn);
  // End to end: what arrived must be what was recorded on upload.
  if (got.data.size() != got.item.size() || DigestBytes(Sha256(got.data)) != got.item.sha256()) {
    return absl::DataLossError(
        "what arrived does not match the recorded size and SHA-256; nothing was saved");
  }
  return got;
}

std::vector<Command> EvidenceCommands() {
  return {
      {{"evidence", "add"},
       "CASE FILE [--media-type T]",
       "attach a document to a case",
       With(ConnectionOptions(), {{"media-type", "T", "e.g. application/pdf, image/jpeg"},
                                  {"name", "NAME", "file name to record"}}),
       RunEvidenceAdd},
      {{"evidence", "list"},
       "CASE",
       "a case's evidence items",
       With(ConnectionOptions(), {{"purpose", "P", "why you look"}}),
       RunEvidenceList},
      {{"evidence", "get"},
       "CASE EVIDENCE --out FILE --purpose P",
       "download an evidence item (digest-checked)",
       With(ConnectionOptions(),
            {{"out", "FILE", "where to save it"}, {"purpose", "P", "why you read it"}}),
       RunEvidenceGet},
  };
}

}  // namespace corridor::ctl
