#pragma once
// The attention key/value cache, paged: every layer's keys and values live in one pool of
// fixed-size blocks of `block_size` token positions, and each sequence owns a list of blocks
// (its block table), so memory follows the sequences' actual lengths and a finished
// sequence's blocks return to the pool at once.
//
// Blocks are reference-counted so that sequences can share a common prefix (prefix caching in
// the serving engine): a full block may sit in several block tables, and whoever else wants to
// keep one (the engine's prefix cache) holds a reference of its own. Shared blocks are only
// ever read: a sequence writes past its attached prefix, into blocks of its own.
//
// Storage per layer: K and V are each (n_blocks, block_size, kv_dim) elements of `dtype`
// (f16 by default, as llama.cpp; f32 for exactness checks), or rows of kv_dim / 32 blocks of
// q8_0, q4_0 or q4_1 (kernels/kv_quants.h), each row quantized once when it is written: the
// same bytes of memory then hold 64/34, 64/18 or 64/20 times the positions of f16. Each
// position's row is quantized on its own, so blocks shared by prefix caching read the same.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/anonymous_memory.h"
#include "core/dtype.h"

namespace kiln {

// The element types a cache can hold, and their names for messages.
inline constexpr const char* kKvCacheTypeNames = "f16, f32, q8_0, q4_0 or q4_1";
bool is_kv_cache_type(DType t);
// Bytes of one position's key (or value) row of kv_dim values in type t.
std::size_t kv_row_bytes(DType t, int kv_dim);

struct KvCacheOptions {
  int n_layer = 0;
  int kv_dim = 0;           // n_head_kv * head_dim
  int capacity_tokens = 0;  // total positions across all sequences
  int block_size = 16;
  DType dtype = DType::F16;  // is_kv_cache_type
};

class KvCache {
 public:
  explicit KvCache(const KvCacheOptions& options);

  // Starts a new empty sequence and returns its id.
  int add_sequence();
  // Returns a sequence's blocks to the pool; its id may be reused.
  void remove_sequence(int seq);
  // Drops positions >= n_tokens of a sequence (e.g. to restart generation), freeing blocks.
  void truncate(int seq, int n_tokens);
  // Starts an empty sequence's table with `blocks`, which must be full blocks of some other
  // sequence's prefix; the sequence's length becomes blocks.size() * block_size.
  void attach_prefix(int seq, const std::vector<int>& blocks);
  // The block table of a live sequence: position p lives in blocks(seq)[p / block_size].
  const std::vector<int>& blocks(int seq) const { return seqs_.at(static_cast<std::size_t>(seq)).blocks; }
  // An extra reference to a block (kept alive while held); release returns it to the pool
  // when no table and no holder is left.
  void retain_block(int block);
  void release_block(int block);
  int block_refs(int block) const { return refs_.at(static_cast<std::size_t>(block)); }
  // Makes room for positions [0, n_tokens) of seq; throws kiln::Error when the pool is full.
  void reserve(int seq, int n_tokens);
  // Positions written so far (the caller advances it after a forward pass).
  int length(int seq) const { return seqs_.at(static_cast<std::size_t>(seq)).length; }
  void set_length(int seq, int n_tokens);

  // Pointers to the key / value row (kv_dim elements, row_bytes() bytes) of a position already
  // reserved; the rows of a block's positions follow each other.
  void* key(int layer, int seq, int pos) { return row(k_[static_cast<std::size_t>(layer)], seq, pos); }
  void* value(int layer, int seq, int pos) { return row(v_[static_cast<std::size_t>(layer)], seq, pos); }

  DType dtype() const { return options_.dtype; }
  int kv_dim() const { return options_.kv_dim; }
  std::size_t row_bytes() const { return row_bytes_; }
  int block_size() const { return options_.block_size; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int total_blocks() const { return n_blocks_; }
  std::size_t bytes() const { return bytes_; }

 private:
  struct Sequence {
    bool live = false;
    int length = 0;
    std::vector<int> blocks;
  };
  void* row(std::uint8_t* layer_base, int seq, int pos);

  KvCacheOptions options_;
  int n_blocks_ = 0;
  std::size_t row_bytes_ = 0;
  std::size_t bytes_ = 0;
  // All layers' K and V in one region of 2 MiB pages. Attention reads each KV head's 128-byte
  // piece of every cached row, a strided walk that in 4 KiB pages misses the TLB every 8 rows
  // (see LlamaModel::attention for the measurement). Pages are still committed on first touch,
  // 2 MiB at a time: a lightly used pool holds up to one huge page per layer's K and V.
  AnonymousRegion storage_;
  std::vector<std::uint8_t*> k_, v_;  // per layer: (n_blocks, block_size, kv_dim) inside storage_
  std::vector<int> free_;
  std::vector<int> refs_;  // (n_blocks) references: block tables holding it plus retain_block holders
  std::vector<Sequence> seqs_;
};

}  // namespace kiln
