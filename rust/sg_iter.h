/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A scatterlist range as a bvec iterator, shared by the file and socket
 * helpers (C only: not bound to Rust).
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

int scst_rs_sg_iter(struct scst_rs_bvecs *b, struct iov_iter *iter,
		    unsigned int direction, struct scatterlist *sgl,
		    unsigned int nents, size_t skip, size_t len);
void scst_rs_bvecs_release(struct scst_rs_bvecs *b);

#endif /* SCST_RS_SG_ITER_H */
