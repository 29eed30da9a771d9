/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A scatterlist range as a bvec iterator, and the clipping of entries to a
 * range under it, shared by the file, socket and bio helpers (C only: not
 * bound to Rust).
 */
#ifndef SCST_RS_SG_ITER_H
#define SCST_RS_SG_ITER_H

#include <linux/bvec.h>
#include <linux/scatterlist.h>
#include <linux/uio.h>

#define SCST_RS_STACK_BVECS 16

/* The bvec array behind an iterator: on the stack up to 16 entries. */
struct scst_rs_bvecs {
	struct bio_vec stack[SCST_RS_STACK_BVECS];
	struct bio_vec *v;
};

/*
 * The part of scatterlist entry @sg, which begins @at bytes into its list,
 * that lies in the list's bytes [@start, @end): returns its length (0 for
 * none) and sets *@off to where it begins in the entry's pages.
 */
static inline size_t scst_rs_sg_part(struct scatterlist *sg, size_t at,
				     size_t start, size_t end, size_t *off)
{
	size_t from = max(at, start), to = min(at + sg->length, end);

	if (from >= to)
		return 0;
	*off = sg->offset + (from - at);
	return to - from;
}

int scst_rs_sg_iter(struct scst_rs_bvecs *b, struct iov_iter *iter,
		    unsigned int direction, struct scatterlist *sgl,
		    unsigned int nents, size_t skip, size_t len);
void scst_rs_bvecs_release(struct scst_rs_bvecs *b);

#endif /* SCST_RS_SG_ITER_H */
