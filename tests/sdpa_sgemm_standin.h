/* tests/sdpa_sgemm_standin.h - a plain stand-in for nn__sgemm (wip/gemm.h) so the attention fragment can be
   tested before the blocked GEMM lands. Same interface: row-major, C = alpha op(A) op(B) + beta C with
   op(A) [M,K], op(B) [K,N]; single-threaded. Not part of nn.h. */
static void nn__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    int64_t i, j, p;
    for (i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) for (j = 0; j < N; j++) c[j] = 0.0f;
        else if (beta != 1.0f) for (j = 0; j < N; j++) c[j] *= beta;
        if (!tb) {  /* c[j] += a_ip * B[p, j]: unit stride over j */
            for (p = 0; p < K; p++) {
                float a = alpha * (ta ? A[p * lda + i] : A[i * lda + p]);
                const float *b = B + p * ldb;
                for (j = 0; j < N; j++) c[j] += a * b[j];
            }
        } else {    /* c[j] += dot(row i of op(A), row j of B) */
            for (j = 0; j < N; j++) {
                float s = 0.0f;
                const float *b = B + j * ldb;
                if (ta) for (p = 0; p < K; p++) s += A[p * lda + i] * b[p];
                else for (p = 0; p < K; p++) s += A[i * lda + p] * b[p];
                c[j] += alpha * s;
            }
        }
    }
}
